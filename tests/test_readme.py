"""The README's two commands stay true: CI runs the test command word for word."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text(encoding="utf-8"))


def test_readme_opens_with_demo_and_test_commands():
    demo, tests = _commands()[:2]
    assert "dalaba demo" in demo and "pip install -e ." in demo
    assert "pytest" in tests and ".[test]" in tests
    # The import rules and the type checks run in CI (design.md §2).
    for check in ("lint-imports", "mypy --strict audio/", "mypy cms/ bot/"):
        assert f".venv/bin/{check}" in tests


def test_ci_runs_the_readme_test_command():
    assert _commands()[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
