"""The import rules of design.md §2, checked in a clean interpreter per package.

`cms.cli` is left out on purpose: it is the composition root, where plugins (bot/) come in
through entry points.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = {
    "audio": {"flask", "sqlalchemy", "telegram", "apscheduler", "cms", "bot"},
    "cms.models": {"flask", "telegram", "bot", "apscheduler"},
    "cms.services.announcements": {"flask", "telegram", "bot"},
    "cms.web": {"telegram", "bot"},
    "bot": {"flask"},
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
