"""audio/ is a pure library: it imports nothing from the web, database or chat side."""

from __future__ import annotations

import json
import subprocess
import sys

import audio

FORBIDDEN = ("flask", "sqlalchemy", "telegram", "apscheduler", "cms", "bot", "werkzeug")
MODULES = (
    "engines",
    "errors",
    "ffmpeg",
    "master",
    "mp3",
    "program",
    "render",
    "subtitles",
    "text",
    "voices",
)


def loaded_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_audio_imports_no_web_database_or_chat_code() -> None:
    imports = "\n".join(f"import audio.{name}" for name in MODULES)
    loaded = loaded_after(imports + "\nfrom audio import *")
    top_level = {name.split(".")[0] for name in loaded}
    assert not top_level & set(FORBIDDEN)


def test_importing_audio_is_light() -> None:
    loaded = {name.split(".")[0] for name in loaded_after("import audio")}
    assert not loaded & {"edge_tts", "aiohttp", "wetext", "pydub"}


def test_all_names_resolve() -> None:
    for name in audio.__all__:
        assert getattr(audio, name) is not None, name
    assert sorted(audio.__all__) == sorted(set(audio.__all__))
