"""The Flask web app."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

from flask import Flask, current_app, g, make_response, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from markupsafe import Markup
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, NotFound, ServiceUnavailable
from werkzeug.routing import IntegerConverter, Map

from cms import disk
from cms.db import is_retryable, make_engine, make_session_factory, use_data_dir
from cms.services.errors import Message
from cms.services.text import MAX_ID, clean_filename
from cms.settings import Settings
from cms.web.bookkeeping import Bookkeeper
from cms.web.cards import label_cells
from cms.web.sessions import EndedSessions

log = logging.getLogger(__name__)
csrf = CSRFProtect()
BUSY_RETRY_AFTER = 5  # seconds a client waits after "the database is busy"

# What a full disk raises: audio's DiskFullError and ENOSPC are OSErrors, SQLite's
# "database or disk is full" and PostgreSQL's disk_full are OperationalErrors.
DISK_ERRORS: tuple[type[Exception], ...] = (OSError, OperationalError)


class IdConverter(IntegerConverter):
    """``<int:…>`` for ids: ASCII digits only, at most ``MAX_ID`` unless a rule says less.

    Werkzeug's own matches any Unicode digit (``\\d``) and any size, and a number beyond
    what the database driver binds (2**63 on SQLite) was an OverflowError, a 500; here it
    does not match, so it is a 404 like any unknown id.
    """

    regex = r"[0-9]{1,10}"

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = None,
        signed: bool = False,
    ) -> None:
        super().__init__(map, fixed_digits, min, MAX_ID if max is None else max, signed)


def create_app(settings: Settings, *, engine: Any = None) -> Flask:
    """Build the web app for ``settings``; ``engine`` lets tests share a database."""
    app = Flask(__name__.rsplit(".", 1)[0], template_folder="templates", static_folder="static")
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
        # The cookie lives as long as a login may (the server checks both timeouts itself);
        # it is re-sent only when its last-seen time moves, not on every request.
        PERMANENT_SESSION_LIFETIME=timedelta(days=settings.session_max_days),
        SESSION_REFRESH_EACH_REQUEST=False,
        MAX_CONTENT_LENGTH=64 * 1024 * 1024,
        WTF_CSRF_TIME_LIMIT=None,
        JSON_AS_ASCII=False,
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["dalaba.settings"] = settings
    app.url_map.converters["int"] = IdConverter
    engine = use_data_dir(engine or make_engine(settings.database_url), settings.data_dir)
    app.extensions["dalaba.engine"] = engine
    # One clock for views and the services they call (settings.clock; tests inject theirs).
    app.extensions["dalaba.sessions"] = make_session_factory(engine, clock=settings.clock)
    app.extensions["dalaba.write_sessions"] = make_session_factory(
        engine, write=True, clock=settings.clock
    )
    app.extensions["dalaba.bookkeeper"] = Bookkeeper(app.extensions["dalaba.sessions"])
    app.extensions["dalaba.ended_sessions"] = EndedSessions()

    from cms.web import downloads, i18n, proxy

    downloads.init_app(app)

    # Flask's documented way to add WSGI middleware; mypy sees a method being replaced.
    app.wsgi_app = proxy.wrap(app.wsgi_app, settings)  # type: ignore[method-assign,assignment]
    i18n.init_app(app, settings)
    from cms.web import voices as voice_pages

    app.before_request(voice_pages.allow_large_upload)  # before CSRF reads the body
    csrf.init_app(app)

    from cms.web import admin, announcements, api, auth, chats, dashboard, operators, schedule
    from cms.web import breakins as breakin_pages
    from cms.web import campaigns as campaign_pages
    from cms.web import ledger as ledger_pages
    from cms.web import notice_templates as template_pages
    from cms.web import notices as notice_pages
    from cms.web import publishing as publishing_pages
    from cms.web import speech as speech_pages
    from cms.web import staff as staff_pages
    from cms.web import terminals as terminal_pages
    from cms.web.share import bp as share_bp

    for blueprint in (auth, dashboard, announcements, admin, schedule, chats, operators, api):
        app.register_blueprint(blueprint.bp)
    app.register_blueprint(campaign_pages.bp)  # county campaigns and the county's report
    app.register_blueprint(share_bp)  # the public share pages /s/<token>
    app.register_blueprint(publishing_pages.bp)  # publisher accounts and the 发布 button
    app.register_blueprint(speech_pages.bp)  # the editor's spoken-text preview and 试听
    app.register_blueprint(voice_pages.bp)  # offline neural voice models
    app.register_blueprint(notice_pages.bp)  # printed notices (A4, A5, one per village)
    app.register_blueprint(template_pages.bp)  # notice templates and drafts from them
    app.register_blueprint(staff_pages.bp)  # the township's staff channel (settings page)
    app.register_blueprint(breakin_pages.bp)  # 立即插播: start, end, banners, now.mp3
    app.register_blueprint(terminal_pages.bp)  # boxes' own links /t/<token>/ and their proof
    app.register_blueprint(ledger_pages.bp)  # 宣传台账: the month's ledger, XLSX and PDF
    csrf.exempt(api.bp)

    app.teardown_appcontext(_close_session)
    app.before_request(auth.load_user)
    app.before_request(auth.enforce_route_rule)
    app.after_request(_security_headers)
    app.after_request(auth.no_store)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    for error in DISK_ERRORS:
        app.register_error_handler(error, _disk_full_error)
    app.register_error_handler(DBAPIError, _database_error)
    app.jinja_env.filters["localtime"] = lambda dt, fmt="%Y-%m-%d %H:%M": _localtime(
        settings, dt, fmt
    )
    app.jinja_env.filters["nl2br"] = _nl2br
    app.jinja_env.filters["filename"] = clean_filename
    app.jinja_env.filters["message"] = _message
    app.jinja_env.filters["cards"] = label_cells
    app.jinja_env.globals["today"] = lambda: today(settings)
    app.jinja_env.globals["disk_space"] = lambda: disk.check(settings)
    return app


def today(settings: Settings) -> date:
    return settings.today()


def _localtime(settings: Settings, dt: datetime | None, fmt: str) -> str:
    return dt.astimezone(settings.tz).strftime(fmt) if dt else ""


def _nl2br(text: str | None) -> Markup:
    from markupsafe import escape

    return Markup("<br>").join(escape(text or "").split("\n"))


def _message(value: Message | str | None) -> str:
    """A message, stored (``Message.dumps``) or not, or an older plain text, in the reader's
    language."""
    from flask_babel import gettext as _

    if not value:
        return ""
    return (value if isinstance(value, Message) else Message.loads(value)).render(_)


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def _security_headers(response):  # type: ignore[no-untyped-def]
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self'; "
        "script-src 'self'; frame-ancestors 'none'",
    )
    return response


def _csrf_error(exc: CSRFError):  # type: ignore[no-untyped-def]
    from flask_babel import gettext as _

    return render_template(
        "error.html",
        code=400,
        message=_("表单已过期或来源不明（CSRF 校验失败），请刷新页面后重试。"),
    ), 400


def _database_error(exc: DBAPIError):  # type: ignore[no-untyped-def]
    """A lock that outlasted the busy timeout and every retry: 503, try again shortly."""
    if not is_retryable(exc):
        raise exc
    from flask_babel import gettext as _

    log.warning("database busy after retries: %s %s: %s", request.method, request.path, exc.orig)
    session = g.pop("db", None)
    if session is not None:
        session.close()
    busy = ServiceUnavailable(description=_("系统正忙，请稍后重试"), retry_after=BUSY_RETRY_AFTER)
    return _http_error(busy)


def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
    if request.path.startswith("/api/"):
        from cms.web.api import error_response
        from cms.web.api.views import missing_resource

        if exc.code == 405 and missing_resource(exc):
            # No such resource: that is the answer, whatever the method (as GET says).
            exc = NotFound()

        response = make_response(error_response(exc.code or 500, exc.name, exc.description))
    else:
        from flask_babel import gettext as _

        text = exc.description
        if exc.code == 413:
            limit = (current_app.config["MAX_CONTENT_LENGTH"] or 0) // (1024 * 1024)
            text = _("上传的文件太大（上限 {n} MB）").format(n=limit)
        elif exc.code == 404 and text == NotFound.description:
            text = _("页面不存在")
        response = make_response(
            render_template("error.html", code=exc.code, message=text), exc.code or 500
        )
    # Keep the exception's own headers (Allow on 405, WWW-Authenticate on 401 …).
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers.setdefault(name, value)
    return response


def _disk_full_error(exc: Exception):  # type: ignore[no-untyped-def]
    """A write failed because the disk is full: 503 with a clear message, not a crash."""
    if not disk.is_disk_full(exc):
        if isinstance(exc, DBAPIError):
            return _database_error(exc)  # Flask picks this handler for OperationalError
        raise exc  # any other error: the usual 500
    from flask_babel import gettext as _

    log.error("%s %s: disk full (%s)", request.method, request.path, exc)
    session = g.get("db")
    if session is not None:
        session.rollback()
    message = _(disk.DISK_FULL)
    if request.path.startswith("/api/"):
        from cms.web.api import error_response

        response = make_response(error_response(503, "disk_full", message))
    else:
        response = make_response(render_template("error.html", code=503, message=message), 503)
    response.headers["Retry-After"] = "60"
    return response
