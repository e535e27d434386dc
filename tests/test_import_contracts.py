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


# A module for every package the contracts name, each layer using the ones below it:
# web -> scheduler -> jobs -> services -> core (the queue may use the errors of services).
SKELETON = {
    "audio/__init__.py": "",
    "cms/__init__.py": "",
    "cms/models.py": "import sqlalchemy\nfrom cms import clock\n",
    "cms/db.py": "",
    "cms/clock.py": "",
    "cms/settings.py": "from cms.clock import Clock\n",
    "cms/queue.py": "from cms import db, models\nfrom cms.services.errors import Message\n",
    "cms/lease.py": "from cms import db, models\n",
    "cms/channels.py": "from cms.services import errors\n",
    "cms/publishers.py": "from cms.services import errors\n",
    "cms/services/__init__.py": "",
    "cms/services/errors.py": "",
    "cms/services/users.py": "from werkzeug.security import generate_password_hash\n",
    "cms/services/schedule.py": "from cms import lease, queue\n",
    "cms/jobs/__init__.py": "",
    "cms/jobs/renders.py": "from cms import queue\nfrom cms.services import users\n",
    "cms/jobs/reconcile.py": "",
    "cms/scheduler/__init__.py": "",
    "cms/scheduler/core.py": "import apscheduler\nfrom cms.jobs import reconcile, renders\n",
    "cms/web/__init__.py": "import flask\n",
    "cms/web/views.py": "from cms.services import schedule\nfrom cms.scheduler import core\n",
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
    "cms/roles.py": "from cms.models import Role\n",
    "cms/migrate.py": "from cms import models\n",
    "cms/demo.py": "",
    "cms/tree.py": "from cms import models\n",
    "cms/services/scope.py": "from cms import tree\n",
    "cms/services/areas.py": "from cms.services import scope\n",
    "cms/services/outlets.py": "from cms import tree\nfrom cms.services import scope\n",
    "cms/services/township.py": "from cms.services import areas, outlets\n",
}

BROKEN = [
    ("cms/services/schedule.py", "import cms.scheduler.core", "one direction"),
    ("cms/services/schedule.py", "from cms import scheduler", "one direction"),
    ("cms/services/schedule.py", "from ..jobs import renders", "one direction"),
    ("cms/services/users.py", "from .. import jobs", "one direction"),
    ("cms/services/users.py", "def f():\n    from cms.jobs.reconcile import x", "one direction"),
    ("cms/jobs/reconcile.py", "from cms.scheduler import core", "one direction"),
    ("cms/jobs/reconcile.py", "from cms import cli_common", "one direction"),
    ("cms/scheduler/core.py", "from cms.cli import cli", "one direction"),
    ("cms/queue.py", "from cms.services import users", "the core"),
    # (A core module that services use, importing upwards, breaks the layers as well.)
    ("cms/settings.py", "from cms.jobs import reconcile", "the core"),
    ("cms/settings.py", "def f():\n    import cms.scheduler", "the core"),
    ("cms/settings.py", "from cms.services import schedule", "the core"),
    ("audio/__init__.py", "import sqlalchemy", "audio is a pure library"),
    ("audio/__init__.py", "from cms import models", "audio is a pure library"),
    ("cms/models.py", "import flask", "the data layer, services and scheduler"),
    ("cms/jobs/renders.py", "import flask_babel", "the data layer, services and scheduler"),
    ("cms/models.py", "import apscheduler", "the data model needs no scheduler"),
    ("cms/jobs/renders.py", "def f():\n    import telegram", "cms never imports"),
    ("cms/web/views.py", "import wechat", "cms never imports"),
    ("bot/__init__.py", "from flask import Flask", "plugins never import Flask"),
    ("robots/__init__.py", "import telegram", "only bot talks to Telegram"),
    ("wechat/__init__.py", "import robots", "the plugins are independent"),
    ("cms/cli_chats.py", "def f():\n    from cms.cli import cli", "the dalaba command's modules"),
    ("cms/cli_scheduler.py", "from cms.cli_chats import chats", "the dalaba command's modules"),
    ("cms/cli_common.py", "from cms import cli_audio", "the dalaba command's modules"),
    ("cms/roles.py", "from cms.services import users", "the table of role sets is core"),
    ("cms/roles.py", "def f():\n    from flask import g", "the table of role sets is core"),
    ("cms/models.py", "from cms.settings import Settings", "stored file paths need no settings"),
    ("cms/models.py", "def f():\n    from cms import db", "stored file paths need no settings"),
    ("cms/tree.py", "from cms.services import users", "the area tree is core"),
    ("cms/tree.py", "def f():\n    from cms import demo", "the area tree is core"),
    ("cms/tree.py", "import flask", "the data layer, services and scheduler"),
    ("cms/services/scope.py", "def f():\n    from cms.services.areas import x", "area services"),
    ("cms/services/outlets.py", "from cms.services import township", "area services"),
    ("cms/services/areas.py", "from cms.services.outlets import x", "area services"),
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
