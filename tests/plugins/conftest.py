"""The running-server fixtures of the channel tests, for the made-up platform's test."""

from tests.scheduler.test_serve_channels import people, serve

__all__ = ["people", "serve"]
