"""pyproject.toml tells the truth: what our code imports is declared, the build ships what exists.

- Every third-party module imported by the packages (and by the tests, the benchmarks) comes
  from a distribution that ``pyproject.toml`` declares for them, so nothing works only because
  another package happens to pull it in today.
- The package-data patterns each match files; the licence file exists and is declared.
- ``deploy/requirements.lock`` (the hash-pinned set deployments install) is in step with
  ``pyproject.toml``: every runtime and ``postgres`` requirement is pinned there at a version
  the requirement allows, and its header is the command the README documents.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
FIRST_PARTY = {"audio", "cms", "bot", "robots", "wechat", "tests", "bench"}
# Modules that exist only for type checkers (typeshed), imported under TYPE_CHECKING.
TYPING_ONLY = {"_typeshed"}
LOCK = ROOT / "deploy" / "requirements.lock"


def requirements(*extras: str) -> list[Requirement]:
    found = [Requirement(line) for line in PROJECT["dependencies"]]
    for extra in extras:
        found += [Requirement(line) for line in PROJECT["optional-dependencies"][extra]]
    return found


def declared(*extras: str) -> set[str]:
    """Distribution names these requirements install here (markers evaluated for this Python)."""
    return {
        canonicalize_name(req.name)
        for req in requirements(*extras)
        if req.marker is None or req.marker.evaluate()
    }


def imported_modules(folder: Path) -> Iterator[tuple[str, Path]]:
    """The top-level name of every absolute import in ``folder``'s Python files."""
    for path in sorted(folder.rglob("*.py")):
        if ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name.partition(".")[0], path
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield node.module.partition(".")[0], path


def undeclared(folders: list[str], allowed: set[str]) -> list[str]:
    owners = packages_distributions()
    problems = []
    for folder in folders:
        for module, path in imported_modules(ROOT / folder):
            if module in FIRST_PARTY or module in TYPING_ONLY or module in sys.stdlib_module_names:
                continue
            # A module of a package not installed here (pydub, from the bench extra, is not in
            # the test environment) counts when a declared distribution has its name.
            dists = {canonicalize_name(d) for d in owners.get(module, [canonicalize_name(module)])}
            if not dists & allowed:
                where = path.relative_to(ROOT)
                problems.append(f"{where}: {module} (from {sorted(dists)})")
    return problems


def test_the_packages_import_only_what_they_declare():
    """audio/, cms/, bot/, robots/ and wechat/ import only runtime dependencies (and the
    neural extra's sherpa-onnx, imported only when that engine is used); pydub is not one."""
    allowed = declared("neural")
    assert "pydub" not in allowed
    assert undeclared(["audio", "cms", "bot", "robots", "wechat"], allowed) == []


def test_the_tests_import_only_what_they_declare():
    assert undeclared(["tests"], declared("test", "postgres", "neural")) == []


def test_the_benchmarks_import_only_what_they_declare():
    # The benchmarks reuse the tests' loopback fakes.
    assert undeclared(["bench"], declared("bench", "test", "postgres")) == []


def test_the_checker_finds_an_undeclared_import(tmp_path, monkeypatch):
    """The walk above can fail: an import of an installed but undeclared package is reported."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "import pytest\nfrom os import path\nfrom . import x\nimport pydub.audio_segment\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert undeclared(["pkg"], declared()) == [
        "pkg/m.py: pytest (from ['pytest'])",
        "pkg/m.py: pydub (from ['pydub'])",
    ]


def test_postgres_extra_carries_the_driver_the_readme_names():
    assert {canonicalize_name(r.name) for r in requirements("postgres")} >= {"psycopg"}
    psycopg = next(r for r in requirements("postgres") if r.name == "psycopg")
    assert "binary" in psycopg.extras  # no compiler or libpq headers needed on the server
    assert "postgresql+psycopg://" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_build_system_asks_for_the_setuptools_the_metadata_needs():
    # license = "MIT" as an SPDX expression and license-files: setuptools 77 (PEP 639).
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    (setuptools,) = (Requirement(r) for r in PYPROJECT["build-system"]["requires"])
    assert setuptools.name == "setuptools"
    assert not setuptools.specifier.contains("76.1") and setuptools.specifier.contains("77.0")
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License") and "dalaba developers" in licence


@pytest.mark.parametrize(
    ("package", "pattern"),
    [
        (package, pattern)
        for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items()
        for pattern in patterns
    ],
)
def test_every_package_data_pattern_matches_files(package, pattern):
    matched = [p for p in (ROOT / package).glob(pattern) if p.is_file()]
    assert matched, f"{package}/{pattern} matches nothing"


# --- the deployment lock -----------------------------------------------------------------

LOCK_COMMAND = (
    "uv pip compile pyproject.toml --universal --python-version 3.11 --extra postgres "
    "--generate-hashes -o deploy/requirements.lock"
)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked() -> dict[str, list[tuple[str, str | None]]]:
    """Name -> [(version, marker)] of every pin in the lock; each pin must carry hashes."""
    pins: dict[str, list[tuple[str, str | None]]] = {}
    lines = LOCK.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        match = PIN.match(line)
        if match:
            name, version, marker = match.groups()
            assert lines[number + 1].strip().startswith("--hash=sha256:"), line
            pins.setdefault(canonicalize_name(name), []).append((version, marker))
    return pins


def test_the_lock_is_made_by_the_documented_command():
    header = LOCK.read_text(encoding="utf-8").splitlines()[:2]
    assert header[1].strip("# ") == LOCK_COMMAND
    assert LOCK_COMMAND in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_lock_pins_every_requirement_at_an_allowed_version():
    pins = locked()
    for req in requirements("postgres"):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is missing from {LOCK.name}: run {LOCK_COMMAND}"
        for version, _marker in pins[name]:
            assert req.specifier.contains(version, prereleases=True), (
                f"{LOCK.name} pins {name}=={version}, outside {req}: run {LOCK_COMMAND}"
            )


def test_the_lock_carries_what_the_extras_pull_in():
    """python-telegram-bot[rate-limiter] needs aiolimiter, psycopg[binary] psycopg-binary."""
    pins = locked()
    for req in requirements("postgres"):
        for extra in req.extras:
            pulled = [
                Requirement(line)
                for line in metadata.requires(req.name) or []
                if Requirement(line).marker is not None
                and Requirement(line).marker.evaluate({"extra": extra})  # type: ignore[union-attr]
                and not Requirement(line).marker.evaluate({"extra": ""})  # type: ignore[union-attr]
            ]
            assert pulled, f"{req.name}[{extra}] pulls in nothing here"
            for dependency in pulled:
                assert canonicalize_name(dependency.name) in pins, (
                    f"{req.name}[{extra}]: {dependency}"
                )


def test_the_lock_installs_no_test_tools():
    assert not {"pytest", "playwright", "mypy", "ruff", "pydub"} & set(locked())


@pytest.mark.parametrize(
    ("module", "error"),
    [
        ("cms.services.example", True),
        ("audio", True),
        ("robots.base", True),
        ("0008_township_settings_py", True),  # how Alembic names a migration script's module
        ("env_py", True),
        ("sqlalchemy.engine", False),  # others' own deprecations stay warnings
    ],
)
def test_deprecation_warnings_from_our_code_are_errors(module, error):
    """pyproject's filterwarnings: a deprecated call made in our packages fails the suite."""
    namespace = {"__name__": module, "warnings": __import__("warnings")}
    code = compile("warnings.warn('old call', DeprecationWarning)", f"<{module}>", "exec")
    if error:
        with pytest.raises(DeprecationWarning, match="old call"):
            exec(code, namespace)
    else:
        with pytest.warns(DeprecationWarning, match="old call"):
            exec(code, namespace)
