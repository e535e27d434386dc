"""The import rules of design.md §2, checked in a clean interpreter per package (and, for rules
about direct imports only, by reading the import statements).

`cms.cli` is left out on purpose: it is the composition root, where plugins (bot/) come in
through entry points.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "audio": {"flask", "sqlalchemy", "telegram", "apscheduler", "cms", "bot", "robots"},
    "cms.models": {"flask", "telegram", "bot", "apscheduler", "robots"},
    "cms.services.announcements": {"flask", "telegram", "bot", "robots"},
    "cms.services.chats": {"flask", "telegram", "bot", "robots"},
    "cms.web": {"telegram", "bot", "robots"},
    "cms.scheduler.deliveries": {"flask", "telegram", "bot", "robots"},
    "bot": {"flask", "robots"},
    "robots": {"flask", "telegram", "bot"},
    "robots.wecom": {"flask", "telegram", "bot"},
    "robots.dingtalk": {"flask", "telegram", "bot"},
    "robots.feishu": {"flask", "telegram", "bot"},
    "wechat": {"flask", "telegram", "bot", "robots"},
}


def _imported(module: str) -> set[str]:
    code = f"import json, sys, importlib; importlib.import_module({module!r}); print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return {name.split(".")[0] for name in json.loads(out)} | set(json.loads(out))


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(module):
    loaded = _imported(module)
    assert not (FORBIDDEN[module] & loaded), (
        f"{module} pulls in {sorted(FORBIDDEN[module] & loaded)}"
    )


def test_audio_submodules_stay_pure():
    import pkgutil

    import audio

    for info in pkgutil.iter_modules(audio.__path__, "audio."):
        loaded = _imported(info.name)
        assert not (FORBIDDEN["audio"] & loaded), info.name


# design.md §2: web pages reach the scheduler's state only through services (which audit every
# change). cms.services.schedule imports cms.scheduler, so this rule is about the web's own
# import statements (anywhere in a module, including inside functions), not what they pull in.
DIRECT_FORBIDDEN = {"cms.web": ("cms.scheduler",), "cms": ("wechat",)}


def _direct_imports(source: str, package: str) -> set[str]:
    """Every module named by an import statement in ``source`` (a module of ``package``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            # `from cms import scheduler` imports the package cms.scheduler itself.
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _forbidden(names: set[str], bad: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == b or n.startswith(f"{b}.") for b in bad))


@pytest.mark.parametrize("package", sorted(DIRECT_FORBIDDEN))
def test_package_never_imports_directly(package):
    folder = ROOT.joinpath(*package.split("."))
    problems = []
    for path in sorted(folder.rglob("*.py")):
        module_package = path.parent.relative_to(ROOT).as_posix().replace("/", ".")
        names = _direct_imports(path.read_text(encoding="utf-8"), module_package)
        problems += [
            f"{path.relative_to(ROOT)} imports {n}"
            for n in _forbidden(names, DIRECT_FORBIDDEN[package])
        ]
    assert problems == []


@pytest.mark.parametrize(
    "source",
    [
        "import cms.scheduler.lease",
        "from cms import scheduler",
        "from ..scheduler import renders",
        "from .. import scheduler",
        "def f():\n    from cms.scheduler.reconcile import open_alerts",
    ],
)
def test_direct_import_check_sees_every_form(source):
    assert _forbidden(_direct_imports(source, "cms.web"), ("cms.scheduler",)) != []
    assert (
        _forbidden(
            _direct_imports("from cms.services import schedule", "cms.web"), ("cms.scheduler",)
        )
        == []
    )
