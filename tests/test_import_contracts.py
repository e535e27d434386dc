"""The import rules of design.md §2 are import-linter contracts in pyproject.toml.

The suite fails when the code breaks one, and each contract is shown to catch what it is
about, in every import form, on a small skeleton of the packages.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"


def _lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "COLUMNS": "200"}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            LINT,
            "--no-cache",
            "--no-logo",
            "--config",
            str(ROOT / "pyproject.toml"),
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_code_keeps_every_import_contract():
    result = _lint(ROOT, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: \d+ kept, 0 broken", result.stdout)


# A module for every package the contracts name; cms.services.schedule may use the scheduler.
SKELETON = {
    "audio/__init__.py": "",
    "cms/__init__.py": "",
    "cms/models.py": "import sqlalchemy\n",
    "cms/db.py": "",
    "cms/settings.py": "",
    "cms/channels.py": "from cms import settings\n",
    "cms/publishers.py": "from cms.services import errors\n",
    "cms/services/__init__.py": "",
    "cms/services/errors.py": "",
    "cms/services/users.py": "from werkzeug.security import generate_password_hash\n",
    "cms/services/schedule.py": "from cms.scheduler import lease\n",
    "cms/scheduler/__init__.py": "",
    "cms/scheduler/lease.py": "",
    "cms/scheduler/renders.py": "import apscheduler\n",
    "cms/scheduler/reconcile.py": "",
    "cms/web/__init__.py": "import flask\n",
    "cms/web/views.py": "from cms.services import schedule\n",
    "bot/__init__.py": "import telegram\nfrom cms.services import users\n",
    # (The plugins' imports of the ports are left out: a port's broken rule would break the
    # plugins' rule too, and each case below breaks one contract.)
    "robots/__init__.py": "from cms import db\n",
    "robots/base.py": "from cms.services import errors\n",
    "wechat/__init__.py": "",
    "wechat/api.py": "from cms.services import errors\n",
    "cms/cli.py": "from cms import cli_audio, cli_chats, cli_common, cli_scheduler, cli_voices\n",
    "cms/cli_audio.py": "",
    "cms/cli_voices.py": "",
    "cms/cli_chats.py": "from cms.cli_common import session_factory\n",
    "cms/cli_scheduler.py": "from cms.cli_common import checked_engine\n",
    "cms/cli_common.py": "from cms import db\n",
}

BROKEN = [
    ("cms/web/views.py", "import cms.scheduler.lease", "web pages reach the scheduler"),
    ("cms/web/views.py", "from cms import scheduler", "web pages reach the scheduler"),
    ("cms/web/views.py", "from ..scheduler import renders", "web pages reach the scheduler"),
    ("cms/web/views.py", "from .. import scheduler", "web pages reach the scheduler"),
    (
        "cms/web/views.py",
        "def f():\n    from cms.scheduler.reconcile import open_alerts",
        "web pages reach the scheduler",
    ),
    ("audio/__init__.py", "import sqlalchemy", "audio is a pure library"),
    ("audio/__init__.py", "from cms import models", "audio is a pure library"),
    ("cms/models.py", "import flask", "the data layer, services and scheduler"),
    ("cms/scheduler/renders.py", "import flask_babel", "the data layer, services and scheduler"),
    ("cms/models.py", "import apscheduler", "the data model needs no scheduler"),
    ("cms/scheduler/renders.py", "def f():\n    import telegram", "cms never imports"),
    ("cms/web/views.py", "import wechat", "cms never imports"),
    ("bot/__init__.py", "from flask import Flask", "plugins never import Flask"),
    ("robots/__init__.py", "import telegram", "only bot talks to Telegram"),
    ("wechat/__init__.py", "import robots", "the plugins are independent"),
    ("cms/cli_chats.py", "def f():\n    from cms.cli import cli", "the dalaba command's modules"),
    ("cms/cli_scheduler.py", "from cms.cli_chats import chats", "the dalaba command's modules"),
    ("cms/cli_common.py", "from cms import cli_audio", "the dalaba command's modules"),
    ("cms/channels.py", "from cms.services import users", "the plugin ports"),
    ("cms/publishers.py", "def f():\n    from cms.web import views", "the plugin ports"),
    ("robots/base.py", "from cms.services.users import x", "the robots and the Official"),
    ("wechat/api.py", "import cms.scheduler.lease", "the robots and the Official"),
]


def _skeleton(tmp_path: Path, extra: dict[str, str]) -> Path:
    for name, source in {**SKELETON, **extra}.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return tmp_path / "src"


def test_the_skeleton_keeps_the_contracts(tmp_path):
    src = _skeleton(tmp_path, {})
    result = _lint(src, src)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("module", "line", "contract"), BROKEN)
def test_each_contract_catches_its_import(tmp_path, module, line, contract):
    src = _skeleton(tmp_path, {module: SKELETON[module] + line + "\n"})
    result = _lint(src, src)
    assert result.returncode != 0
    assert re.search(r"Contracts: \d+ kept, 1 broken", result.stdout), result.stdout
    broken = result.stdout.split("Broken contracts", 1)[1]
    assert contract in broken, result.stdout
