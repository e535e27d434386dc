"""Translations: Chinese is the source language; English comes from .po catalogues.

cms has its catalogue (``cms/translations``), and each installed plugin (a chat platform or
a publisher) may register its own through its entry point object (``translations``): the
plugin's messages live with its code. Every catalogue is compiled to .mo at start-up (when
stale) into the data folder, so the repository holds no generated binaries and a fresh
install needs no build step; Flask-Babel merges them, cms's last (its words win).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, g, request, session
from flask_babel import Babel, get_locale
from werkzeug.wrappers import Response

from cms import channels, publishers
from cms.settings import Settings

log = logging.getLogger(__name__)
SOURCE = Path(__file__).resolve().parent.parent / "translations"
# Below the compiled folder: each plugin's catalogue, in a folder of its own.
PLUGINS = "plugins"
LANGUAGES = {"zh_CN": "中文", "en": "English"}


def plugin_catalogues() -> dict[str, Path]:
    """Every installed plugin's catalogue folder (one shared by several platforms, such as
    the group robots', once), by the name of the folder it is compiled into."""
    found: list[Path | None] = [p.translations for p in channels.plugins().values()]
    found += [
        p.translations for p in channels.installed(publishers.GROUP, publishers.PublisherPlugin)
    ]
    folders: dict[str, Path] = {}
    for folder in found:
        if folder is None:
            continue
        folder = folder.resolve()
        digest = hashlib.sha256(str(folder).encode()).hexdigest()[:10]
        folders.setdefault(f"{folder.parent.name}-{digest}", folder)
    return folders


def translation_directories(compiled: Path) -> list[Path]:
    """The folders Flask-Babel loads, in merge order: the plugins', then cms's (``compiled``
    is what :func:`compile_catalogues` returned)."""
    return [compiled / PLUGINS / name for name in plugin_catalogues()] + [compiled]


def compile_catalogues(target: Path) -> Path:
    """Compile stale catalogues (cms's into ``target``, each plugin's into a folder below
    ``target/plugins``); returns the folder to load them from.

    The web must start on a full disk (or a read-only data folder): then the catalogues are
    compiled into a temporary folder elsewhere, or, failing that, an older compiled copy is
    used as it is (without any, the interface is Chinese only).
    """
    try:
        _compile_into(target)
        return target
    except OSError as exc:
        log.warning("cannot write compiled translations into %s: %s", target, exc)
    try:
        fallback = Path(tempfile.mkdtemp(prefix="dalaba-translations-"))
        atexit.register(shutil.rmtree, fallback, ignore_errors=True)
        _compile_into(fallback)
        return fallback
    except OSError as exc:
        log.error("translations not compiled (%s): older or no catalogues are used", exc)
        return target


def _compile_into(target: Path) -> None:
    _compile_folder(SOURCE, target)
    for name, source in plugin_catalogues().items():
        _compile_folder(source, target / PLUGINS / name)


def _compile_folder(source: Path, target: Path) -> None:
    for po in source.glob("*/LC_MESSAGES/messages.po"):
        mo = target / po.relative_to(source).with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        mo.parent.mkdir(parents=True, exist_ok=True)
        with po.open("rb") as f:
            catalog = read_po(f)
        tmp = mo.with_suffix(".tmp")
        try:
            with tmp.open("wb") as f:
                write_mo(f, catalog)
            tmp.replace(mo)
        finally:
            tmp.unlink(missing_ok=True)


LANG_COOKIE = "dalaba_lang"
LANG_COOKIE_MAX_AGE = 400 * 24 * 3600  # browsers keep a cookie at most 400 days


def select_locale() -> str:
    """This session's choice, then the account's, then this browser's last choice (cookie)."""
    lang = session.get("lang")
    if lang in LANGUAGES:
        return lang
    user = g.get("user")
    if user is not None and user.locale in LANGUAGES:
        return user.locale
    remembered = request.cookies.get(LANG_COOKIE)
    if remembered in LANGUAGES:
        return remembered
    from cms.web.db import settings

    return settings().default_locale


def remember_language(response: Response, lang: str) -> Response:
    """Keep the language on this browser, for the login page after logging out or a restart."""
    response.set_cookie(
        LANG_COOKIE,
        lang,
        max_age=LANG_COOKIE_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
    )
    return response


def init_app(app: Flask, settings: Settings) -> None:
    compiled = compile_catalogues(settings.data_dir / "cache" / "translations")
    Babel(
        app,
        locale_selector=select_locale,
        timezone_selector=lambda: settings.timezone,
        default_locale=settings.default_locale,
        # Several folders, separated by ";": Flask-Babel merges them in order.
        default_translation_directories=";".join(map(str, translation_directories(compiled))),
    )
    app.jinja_env.globals.update(LANGUAGES=LANGUAGES, get_locale=get_locale)
