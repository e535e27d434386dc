"""A database URL whose driver is not installed is refused with the extra that carries it.

PostgreSQL's driver (psycopg) comes with ``pip install 'dalaba[postgres]'``. Without it,
SQLAlchemy would fail on the first connection with ``No module named 'psycopg'``; dalaba says
which extra to install before it touches the database.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cms.db import driver_problem, make_engine
from cms.settings import ConfigError, Settings
from tests.cms.test_cli import run

URL = "postgresql+psycopg://dalaba:secret@127.0.0.1:5432/dalaba"
EXTRA = "pip install 'dalaba[postgres]'"


@pytest.fixture
def no_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    """psycopg as if not installed: importing it raises ImportError."""
    monkeypatch.setitem(sys.modules, "psycopg", None)


def test_installed_drivers_are_no_problem():
    assert driver_problem("sqlite://") is None
    assert driver_problem(URL) is None  # the test extra installs psycopg


def test_missing_psycopg_names_the_postgres_extra(no_psycopg, tmp_path):
    problem = driver_problem(URL)
    assert problem is not None and EXTRA in problem and "psycopg" in problem
    assert "secret" not in problem  # the password never reaches a terminal or log
    with pytest.raises(ConfigError, match=r"dalaba\[postgres\]"):
        Settings(data_dir=tmp_path, database_url=URL, secret_key="k")
    with pytest.raises(ConfigError, match=r"dalaba\[postgres\]"):
        make_engine(URL)


def test_another_postgres_driver_is_pointed_at_psycopg():
    problem = driver_problem("postgresql+psycopg2://dalaba@127.0.0.1/dalaba")
    if problem is None:
        pytest.skip("psycopg2 happens to be installed here")
    assert "postgresql+psycopg://" in problem and EXTRA in problem


def test_an_unknown_database_type_is_refused():
    problem = driver_problem("oracle9://x@y/z")
    assert problem is not None and "oracle9" in problem


def test_db_upgrade_without_the_driver_says_which_extra(tmp_path: Path):
    """`dalaba db upgrade` as a user runs it, in an environment where psycopg is missing."""
    shadow = tmp_path / "shadow" / "psycopg"
    shadow.mkdir(parents=True)
    # What Python raises for a package that is not installed, ahead of the real one on the path.
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = run(
        ["db", "upgrade"],
        tmp_path,
        DALABA_DATABASE_URL=URL,
        PYTHONPATH=os.pathsep.join([str(shadow.parent), str(root)]),
    )
    assert result.returncode == 1, result.stderr
    assert EXTRA in result.stderr and "Traceback" not in result.stderr
