"""How the API answers errors: one JSON shape, ``{"error": {"code", "message", "fields"}}``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import g
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import default_exceptions

from cms.services.errors import (
    N_,
    Conflict,
    DomainError,
    Message,
    NotFound,
    PermissionDenied,
    ValidationError,
    WorkflowError,
)
from cms.web.db import db

MAX_REQUEST_BYTES = 512 * 1024

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
}
DEFAULT_MESSAGES = {
    400: N_("请求无效"),
    401: N_("需要有效的 API 令牌（Authorization: Bearer …）"),
    403: N_("没有权限"),
    404: N_("请求的资源不存在"),
    405: N_("该地址不支持这个请求方法"),
    409: N_("与当前状态冲突"),
    413: N_("请求体太大（最多 {n} KB）"),
    415: N_("请求体应为 JSON（Content-Type: application/json）"),
    500: N_("服务器内部错误"),
}


class ApiError(Exception):
    """A request the API cannot read (not JSON, not an object): answered with ``status``."""

    def __init__(self, status: int, message: Message) -> None:
        super().__init__(message.msgid)
        self.status = status
        self.message = message


def _rollback() -> None:
    if "db" in g:
        db().rollback()


def _error_body(status: int, code: str, message: str, fields: Mapping[str, str] | None = None):  # type: ignore[no-untyped-def]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    body = {"error": {"code": code, "message": message, "fields": dict(fields or {})}}
    return body, status, headers


def error_response(code: int, name: str, description: str | None):  # type: ignore[no-untyped-def]
    """JSON for any HTTP error under /api/ (called by the app's error handler)."""
    _rollback()
    default = default_exceptions.get(code)
    if description is None or (default is not None and description == default.description):
        msgid = DEFAULT_MESSAGES.get(code)
        if msgid is None:
            description = name
        else:
            description = Message(
                msgid, {"n": MAX_REQUEST_BYTES // 1024} if code == 413 else {}
            ).render(_)
    slug = ERROR_CODES.get(code) or re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return _error_body(code, slug, description)


def api_error(exc: ApiError):  # type: ignore[no-untyped-def]
    _rollback()
    return _error_body(exc.status, ERROR_CODES[exc.status], exc.message.render(_))


def domain_error(exc: DomainError):  # type: ignore[no-untyped-def]
    _rollback()
    if isinstance(exc, ValidationError):
        return _error_body(400, "invalid_input", exc.message.render(_), exc.render(_))
    status = {NotFound: 404, PermissionDenied: 403, WorkflowError: 409, Conflict: 409}.get(
        type(exc), 400
    )
    return _error_body(status, ERROR_CODES[status], exc.message.render(_))


def integrity_error(exc: IntegrityError):  # type: ignore[no-untyped-def]
    # A concurrent write won the race (e.g. the same area name twice at once).
    _rollback()
    return _error_body(409, "conflict", _("数据已被其他人修改，请刷新后重试"))


def register(bp: Any) -> None:
    """Answer every error a view of ``bp`` raises in the API's JSON shape."""
    bp.register_error_handler(ApiError, api_error)
    bp.register_error_handler(DomainError, domain_error)
    bp.register_error_handler(IntegrityError, integrity_error)
