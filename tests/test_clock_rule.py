"""The clock rule (design.md §2): time comes from one injected clock, "today" is the township's.

An AST check over cms/, bot/, robots/ and wechat/: no ``date.today()``, ``datetime.today()``,
``datetime.utcnow()`` or naive ``datetime.now()`` anywhere (they give the server's or UTC's
date, which from 16:00 to 24:00 UTC is the day before the township's); and the aware
``datetime.now(tz)``, ``time.time()`` and the models' ``utcnow()`` only where the time is
physical, not the township's (listed below, each with its reason).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cms", "bot", "robots", "wechat")

# Never, anywhere: a naive or server-local "now"/"today".
NAIVE = {("date", "today"), ("datetime", "today"), ("datetime", "utcnow")}
# Only in the places below: the real clock, bypassing the injected one.
REAL = {("datetime", "now"), ("time", "time"), ("", "utcnow")}

# (file, enclosing function) → why the real clock is right there.
ALLOWED = {
    ("cms/clock.py", "now"): "SystemClock and OffsetClock are the real clock",
    ("cms/clock.py", "__init__"): "OffsetClock measures its offset from the real clock",
    ("cms/models.py", "utcnow"): "column defaults: when the row was physically written",
    ("cms/scheduler/runner.py", "start_scheduler"): "APScheduler ticks on the real clock",
    ("cms/services/operators.py", "loop_file"): "compared with file mtimes (the disk's clock)",
    ("robots/dingtalk.py", "signed_url"): "DingTalk checks the sign's time against its own clock",
    ("robots/feishu.py", "deliver_part"): "Feishu checks the sign's time against its own clock",
}


def _dotted(node: ast.expr) -> tuple[str, str] | None:
    """``datetime.date.today`` → ("date", "today"); ``utcnow`` → ("", "utcnow")."""
    if isinstance(node, ast.Name):
        return ("", node.id)
    if isinstance(node, ast.Attribute):
        inner = node.value
        owner = inner.id if isinstance(inner, ast.Name) else getattr(inner, "attr", "")
        return (owner, node.attr)
    return None


class _Finder(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.function = "<module>"
        self.found: list[str] = []

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer, self.function = self.function, node.name
        self.generic_visit(node)
        self.function = outer

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        where = f"{self.path}:{node.lineno} in {self.function}()"
        if name in NAIVE or (name == ("datetime", "now") and not (node.args or node.keywords)):
            self.found.append(f"{where}: {'.'.join(filter(None, name))}() is not the township's")
        elif name in REAL and (self.path, self.function) not in ALLOWED:
            self.found.append(
                f"{where}: {'.'.join(filter(None, name))}() bypasses the injected clock "
                "(use settings.now()/today(), ctx.now(), clock_of(session) or a `now` argument)"
            )
        self.generic_visit(node)


def violations(source: str, path: str) -> list[str]:
    finder = _Finder(path)
    finder.visit(ast.parse(source, filename=path))
    return finder.found


def test_time_comes_from_the_injected_clock() -> None:
    found: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            found += violations(path.read_text(encoding="utf-8"), rel)
    assert not found, "\n".join(found)


def test_every_allowed_place_still_exists() -> None:
    """An exception whose code went away is removed, so the list cannot silently grow stale."""
    for (rel, function), _why in ALLOWED.items():
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        names = {
            n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        assert function in names, f"{rel}: no function {function}() any more"


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import date\ndef f():\n    return date.today()",
        "import datetime\nx = datetime.date.today()",
        "from datetime import datetime\ndef f():\n    return datetime.now()",
        "from datetime import datetime\ndef f():\n    return datetime.utcnow()",
        "from datetime import UTC, datetime\ndef f():\n    return datetime.now(UTC)",
        "import time\ndef stamp():\n    return time.time()",
        "from cms.models import utcnow\ndef f():\n    return utcnow()",
    ],
)
def test_the_check_catches(source: str) -> None:
    assert violations(source, "cms/services/example.py")


@pytest.mark.parametrize(
    "source",
    [
        "def f(settings):\n    return settings.today()",
        "def f(ctx):\n    return ctx.now()",
        "from cms.clock import clock_of\ndef f(session):\n    return clock_of(session).now()",
        "import time\ndef f():\n    return time.monotonic()",
        "from datetime import datetime\ndef f(s):\n    return datetime.fromisoformat(s)",
    ],
)
def test_the_check_lets_pass(source: str) -> None:
    assert not violations(source, "cms/services/example.py")
