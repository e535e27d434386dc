"""Services: plain functions that take a Session first, raise domain errors, never commit."""
