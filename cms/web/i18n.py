"""Translations: Chinese is the source language; English comes from a .po catalogue.

The catalogue is compiled to .mo at start-up (when stale) into the data folder, so the
repository holds no generated binaries and a fresh install needs no build step.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, g, session
from flask_babel import Babel, get_locale

from cms.settings import Settings

SOURCE = Path(__file__).resolve().parent.parent / "translations"
LANGUAGES = {"zh_CN": "中文", "en": "English"}


def compile_catalogues(target: Path) -> Path:
    for po in SOURCE.glob("*/LC_MESSAGES/messages.po"):
        mo = target / po.relative_to(SOURCE).with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        mo.parent.mkdir(parents=True, exist_ok=True)
        with po.open("rb") as f:
            catalog = read_po(f)
        tmp = mo.with_suffix(".tmp")
        with tmp.open("wb") as f:
            write_mo(f, catalog)
        tmp.replace(mo)
    return target


def select_locale() -> str:
    lang = session.get("lang")
    if lang in LANGUAGES:
        return lang
    user = g.get("user")
    if user is not None and user.locale in LANGUAGES:
        return user.locale
    from cms.web.db import settings

    return settings().default_locale


def init_app(app: Flask, settings: Settings) -> None:
    directory = compile_catalogues(settings.data_dir / "cache" / "translations")
    Babel(
        app,
        locale_selector=select_locale,
        timezone_selector=lambda: settings.timezone,
        default_locale=settings.default_locale,
        default_translation_directories=str(directory),
    )
    app.jinja_env.globals.update(LANGUAGES=LANGUAGES, get_locale=get_locale)
