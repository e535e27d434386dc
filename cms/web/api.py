"""The JSON API under /api/v1: announcements and their workflow, areas, topics.

Bearer tokens carry the owner's role. The OpenAPI document below is the contract: request
bodies are checked against its schemas (types, formats, enums, unknown fields) before the
services check meaning (lengths, required fields, existing ids, date order), and every
bad field is named in one answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from functools import cache
from typing import Any

from flask import Blueprint, g, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import default_exceptions

from cms.models import Announcement, Area, AreaKind, Priority, Revision, Role, Status, Topic, User
from cms.services import announcements, areas, topics
from cms.services.announcements import (
    EDITORS,
    MAX_BODY,
    MAX_REPEATS,
    MAX_SPOKEN,
    MAX_TITLE,
    PHASES,
    RATE_RANGE,
    READERS,
    REVIEWERS,
    STATUS_LABELS,
    WITHDRAWERS,
)
from cms.services.areas import AREA_KIND_LABELS
from cms.services.errors import (
    N_,
    Conflict,
    DomainError,
    Errors,
    Message,
    NotFound,
    PermissionDenied,
    ValidationError,
    WorkflowError,
)
from cms.services.text import MAX_ID, clean_text
from cms.web.auth import ANY_USER, PUBLIC, rule
from cms.web.db import db, settings

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_REQUEST_BYTES = 512 * 1024
MAX_AREA_IDS = 500
MAX_COMMENT = 2000
MAX_QUERY = 200
MAX_PAGE = 100_000
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 20
CHANNELS = ("loudspeaker", "chats")
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
# Ids are INTEGER columns: larger numbers would overflow the database driver, not match.
ID = f"int(min=1, max={MAX_ID})"

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


# --- The OpenAPI document, written as data -------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_DATE = {"type": "string", "format": "date", "description": "YYYY-MM-DD"}
_DATETIME = {"type": "string", "format": "date-time"}
_USER_REF = {"anyOf": [_ref("UserRef"), {"type": "null"}]}

_CONTENT_PROPERTIES: dict[str, Any] = {
    "title": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_TITLE,
        "description": "One line; surrounding space is trimmed; no control characters.",
    },
    "body": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_BODY,
        "description": "What is posted to group chats; newlines allowed.",
    },
    "spoken_text": _nullable(
        {
            "type": "string",
            "maxLength": MAX_SPOKEN,
            "description": "What the loudspeaker says; empty or null means the body.",
        }
    ),
    "topic_id": _nullable({**_ID, "description": "An existing topic (GET /topics)."}),
    "priority": {"type": "string", "enum": [p.value for p in Priority], "default": "normal"},
    "area_ids": {
        "type": "array",
        "items": _ID,
        "minItems": 1,
        "maxItems": MAX_AREA_IDS,
        "description": "Target areas (GET /areas); each includes everything below it.",
    },
    "channels": {
        "type": "array",
        "items": {"type": "string", "enum": list(CHANNELS)},
        "minItems": 1,
        "uniqueItems": True,
    },
    "start_date": {**_DATE, "description": "First day on the loudspeakers."},
    "end_date": {
        **_DATE,
        "description": "Last day; not before start_date, not in the past, window at most "
        f"{announcements.MAX_WINDOW_DAYS} days.",
    },
    "repeats": {"type": "integer", "minimum": 1, "maximum": MAX_REPEATS, "default": 1},
    "chat_post_time": _nullable(
        {
            "type": "string",
            "pattern": TIME_PATTERN,
            "description": "HH:MM (Asia/Shanghai); required when channels include chats.",
        }
    ),
    "voice": {"type": "string", "enum": [], "default": announcements.DEFAULT_VOICE},
    "rate": {
        "type": "integer",
        "minimum": RATE_RANGE[0],
        "maximum": RATE_RANGE[1],
        "default": 0,
        "description": "Speaking rate in percent.",
    },
}
_CONTENT_REQUIRED = ["title", "body", "area_ids", "channels", "start_date", "end_date"]

_REVISION_PROPERTIES: dict[str, Any] = {
    "number": {"type": "integer", "minimum": 1},
    **_CONTENT_PROPERTIES,
    # What was saved then: later rules (voice whitelist, dates in the past) do not apply.
    "topic_id": _nullable({"type": "integer"}),
    "start_date": _DATE,
    "end_date": _DATE,
    "voice": {"type": "string"},
    "topic_name": _nullable({"type": "string"}),
    "areas": {"type": "array", "items": _ref("AreaRef")},
    "author": _ref("UserRef"),
    "created_at": _DATETIME,
}

_SUMMARY_PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer"},
    "status": {"type": "string", "enum": [s.value for s in Status]},
    "phase": {
        "type": "string",
        "enum": list(PHASES),
        "description": "status with approved split into scheduled / active / finished.",
    },
    "phase_label": {"type": "string"},
    "title": {"type": "string"},
    "topic_id": _nullable({"type": "integer"}),
    "priority": _CONTENT_PROPERTIES["priority"],
    "areas": {"type": "array", "items": _ref("AreaRef")},
    "channels": _CONTENT_PROPERTIES["channels"],
    "start_date": _DATE,
    "end_date": _DATE,
    "latest_revision_number": {"type": "integer"},
    "approved_revision_number": _nullable({"type": "integer"}),
    "created_at": _DATETIME,
    "updated_at": _DATETIME,
}

_DETAIL_PROPERTIES: dict[str, Any] = {
    **_SUMMARY_PROPERTIES,
    "created_by": _ref("UserRef"),
    "submitted_by": _USER_REF,
    "reviewed_by": _USER_REF,
    "reviewed_at": _nullable(_DATETIME),
    "review_comment": _nullable({"type": "string"}),
    "withdrawn_at": _nullable(_DATETIME),
    "revision_count": {"type": "integer"},
    "latest_revision": _ref("Revision"),
    "approved_revision": {"anyOf": [_ref("Revision"), {"type": "null"}]},
}

_AREA_PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer"},
    "name": {"type": "string"},
    "kind": {"type": "string", "enum": [k.value for k in AreaKind]},
    "kind_label": {"type": "string"},
    "parent_id": _nullable({"type": "integer"}),
    "path": {
        "type": "array",
        "items": {"type": "integer"},
        "description": "Ids from the root down to this area.",
    },
    "depth": {"type": "integer", "minimum": 0},
    "full_name": {"type": "string", "description": "Names from the root, joined by ' / '."},
}


def _object(properties: Mapping[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """A closed object schema; responses list every key as required."""
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {
            "error": _object(
                {
                    "code": {
                        "type": "string",
                        "description": "Machine-readable: "
                        + ", ".join(sorted({*ERROR_CODES.values(), "invalid_input", "disk_full"}))
                        + " (disk_full: 503, the server's disk is full; retry later).",
                    },
                    "message": {"type": "string", "description": "In the request's locale."},
                    "fields": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "Each bad field (or query parameter) with its message.",
                    },
                }
            )
        }
    ),
    "UserRef": _object(
        {
            "id": {"type": "integer"},
            "username": {"type": "string"},
            "display_name": {"type": "string"},
        }
    ),
    "AreaRef": _object({"id": {"type": "integer"}, "name": {"type": "string"}}),
    "Area": _object(_AREA_PROPERTIES),
    "AreaDetail": _object(
        {**_AREA_PROPERTIES, "children": {"type": "array", "items": _ref("Area")}}
    ),
    "AreaList": _object({"items": {"type": "array", "items": _ref("Area")}}),
    "AreaInput": _object(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 80},
            "kind": {"type": "string", "enum": [k.value for k in AreaKind]},
            "parent_id": _nullable(_ID),
        },
        required=["name", "kind"],
    ),
    "Topic": _object(
        {"id": {"type": "integer"}, "name": {"type": "string"}, "active": {"type": "boolean"}}
    ),
    "TopicList": _object({"items": {"type": "array", "items": _ref("Topic")}}),
    "AnnouncementInput": _object(_CONTENT_PROPERTIES, required=_CONTENT_REQUIRED),
    "AnnouncementPatch": {
        **_object(_CONTENT_PROPERTIES, required=[]),
        "description": "Only the given fields change; the rest come from the latest revision.",
    },
    "Revision": _object(_REVISION_PROPERTIES),
    "RevisionList": _object({"items": {"type": "array", "items": _ref("Revision")}}),
    "AnnouncementSummary": _object(_SUMMARY_PROPERTIES),
    "Announcement": _object(_DETAIL_PROPERTIES),
    "AnnouncementPage": _object(
        {
            "items": {"type": "array", "items": _ref("AnnouncementSummary")},
            "page": {"type": "integer", "minimum": 1},
            "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
            "total": {"type": "integer", "minimum": 0},
            "pages": {"type": "integer", "minimum": 0},
        }
    ),
    "SubmitInput": _object({}, required=[]),
    "ApproveInput": _object(
        {"comment": _nullable({"type": "string", "maxLength": MAX_COMMENT})}, required=[]
    ),
    "RejectInput": _object(
        {"comment": {"type": "string", "minLength": 1, "maxLength": MAX_COMMENT}},
        required=["comment"],
    ),
    "WithdrawInput": _object(
        {"reason": _nullable({"type": "string", "maxLength": MAX_COMMENT})}, required=[]
    ),
}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }


RESPONSES: dict[str, Any] = {
    "BadRequest": _error_response(
        "Malformed JSON, a body that is not an object, or invalid fields (named in error.fields)."
    ),
    "Unauthorized": _error_response("Missing, unknown or revoked token."),
    "Forbidden": _error_response("The token owner's role may not do this."),
    "NotFound": _error_response("No such announcement, revision or area."),
    "Conflict": _error_response("Not allowed in the current workflow state."),
    "UnsupportedMediaType": _error_response("The body is not application/json."),
    "PayloadTooLarge": _error_response(f"The body is larger than {MAX_REQUEST_BYTES} bytes."),
}

PARAMETERS: dict[str, Any] = {
    "AnnouncementId": {
        "name": "announcement_id",
        "in": "path",
        "required": True,
        "schema": _ID,
    },
    "RevisionNumber": {"name": "number", "in": "path", "required": True, "schema": _ID},
    "AreaId": {"name": "area_id", "in": "path", "required": True, "schema": _ID},
}


def _json(schema_name: str, description: str = "OK") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema_name)}},
    }


def _body(schema_name: str, required: bool = True) -> dict[str, Any]:
    return {
        "required": required,
        "content": {"application/json": {"schema": _ref(schema_name)}},
    }


def _errors(*codes: str) -> dict[str, Any]:
    names = {
        "400": "BadRequest",
        "401": "Unauthorized",
        "403": "Forbidden",
        "404": "NotFound",
        "409": "Conflict",
        "413": "PayloadTooLarge",
        "415": "UnsupportedMediaType",
    }
    return {c: {"$ref": f"#/components/responses/{names[c]}"} for c in codes}


def _param(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _action(name: str, summary: str, schema: str, roles: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"{name}Announcement",
            "summary": summary,
            "description": f"Roles: {roles}. An empty body is allowed when no field is required.",
            "tags": ["announcements"],
            "parameters": [_param("AnnouncementId")],
            "requestBody": _body(schema, required=schema == "RejectInput"),
            "responses": {
                "200": _json("Announcement"),
                **_errors("400", "401", "403", "404", "409", "413", "415"),
            },
        }
    }


_WRITE_ERRORS = ("400", "401", "403", "404", "409", "413", "415")

PATHS: dict[str, Any] = {
    "/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "tags": ["meta"],
            "security": [],
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1 document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
    "/announcements": {
        "get": {
            "operationId": "listAnnouncements",
            "summary": "Announcements, newest first, filtered and paginated",
            "description": "Roles: admin, editor, reviewer. Unknown or repeated parameters are "
            "refused with 400 naming them.",
            "tags": ["announcements"],
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"type": "string", "enum": list(PHASES)},
                },
                {"name": "topic_id", "in": "query", "schema": _ID},
                {
                    "name": "area_id",
                    "in": "query",
                    "schema": _ID,
                    "description": "Aimed at this area, anything below it, or anything above it.",
                },
                {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": MAX_QUERY}},
                {
                    "name": "page",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
                },
                {
                    "name": "per_page",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_PER_PAGE,
                        "default": DEFAULT_PER_PAGE,
                    },
                },
            ],
            "responses": {"200": _json("AnnouncementPage"), **_errors("400", "401", "403")},
        },
        "post": {
            "operationId": "createAnnouncement",
            "summary": "Create a draft (revision 1)",
            "description": "Roles: admin, editor.",
            "tags": ["announcements"],
            "requestBody": _body("AnnouncementInput"),
            "responses": {
                "201": {
                    **_json("Announcement", "Created"),
                    "headers": {
                        "Location": {
                            "schema": {"type": "string"},
                            "description": "The new announcement",
                        }
                    },
                },
                **_errors("400", "401", "403", "413", "415"),
            },
        },
    },
    "/announcements/{announcement_id}": {
        "parameters": [_param("AnnouncementId")],
        "get": {
            "operationId": "getAnnouncement",
            "summary": "One announcement with its latest and approved revisions",
            "description": "Roles: admin, editor, reviewer.",
            "tags": ["announcements"],
            "responses": {"200": _json("Announcement"), **_errors("401", "403", "404")},
        },
        "put": {
            "operationId": "replaceAnnouncement",
            "summary": "Edit: the body is the whole new content; saves a new revision",
            "description": "Roles: admin, editor. Editing an approved announcement sends it back "
            "to draft; the approved revision keeps going out until a new one is approved. "
            "Nothing changes (and no revision is made) when the content is the same.",
            "tags": ["announcements"],
            "requestBody": _body("AnnouncementInput"),
            "responses": {"200": _json("Announcement"), **_errors(*_WRITE_ERRORS)},
        },
        "patch": {
            "operationId": "patchAnnouncement",
            "summary": "Edit: the given fields are merged onto the latest revision",
            "description": "Roles: admin, editor. As PUT otherwise.",
            "tags": ["announcements"],
            "requestBody": _body("AnnouncementPatch"),
            "responses": {"200": _json("Announcement"), **_errors(*_WRITE_ERRORS)},
        },
    },
    "/announcements/{announcement_id}/submit": _action(
        "submit", "Submit a draft for review", "SubmitInput", "admin, editor"
    ),
    "/announcements/{announcement_id}/approve": _action(
        "approve",
        "Approve the latest revision (pins it as the one that goes out)",
        "ApproveInput",
        "admin, reviewer; not the author or submitter unless self-approval is allowed",
    ),
    "/announcements/{announcement_id}/reject": _action(
        "reject", "Send back to draft with a comment", "RejectInput", "admin, reviewer"
    ),
    "/announcements/{announcement_id}/withdraw": _action(
        "withdraw", "Stop it everywhere from now on", "WithdrawInput", "admin, editor, reviewer"
    ),
    "/announcements/{announcement_id}/revisions": {
        "parameters": [_param("AnnouncementId")],
        "get": {
            "operationId": "listRevisions",
            "summary": "Every revision, oldest first",
            "tags": ["announcements"],
            "responses": {"200": _json("RevisionList"), **_errors("401", "403", "404")},
        },
    },
    "/announcements/{announcement_id}/revisions/{number}": {
        "parameters": [_param("AnnouncementId"), _param("RevisionNumber")],
        "get": {
            "operationId": "getRevision",
            "summary": "One revision",
            "tags": ["announcements"],
            "responses": {"200": _json("Revision"), **_errors("401", "403", "404")},
        },
    },
    "/areas": {
        "get": {
            "operationId": "listAreas",
            "summary": "The township grid as a flat list in tree order (parents first)",
            "description": "Roles: every role.",
            "tags": ["areas"],
            "responses": {"200": _json("AreaList"), **_errors("401")},
        },
        "post": {
            "operationId": "createArea",
            "summary": "Add an area to the grid",
            "description": "Roles: admin.",
            "tags": ["areas"],
            "requestBody": _body("AreaInput"),
            "responses": {
                "201": {
                    **_json("Area", "Created"),
                    "headers": {"Location": {"schema": {"type": "string"}}},
                },
                **_errors("400", "401", "403", "409", "413", "415"),
            },
        },
    },
    "/areas/{area_id}": {
        "parameters": [_param("AreaId")],
        "get": {
            "operationId": "getArea",
            "summary": "One area with its children",
            "description": "Roles: every role.",
            "tags": ["areas"],
            "responses": {"200": _json("AreaDetail"), **_errors("401", "404")},
        },
    },
    "/topics": {
        "get": {
            "operationId": "listTopics",
            "summary": "Announcement topics (for topic_id)",
            "description": "Roles: admin, editor, reviewer.",
            "tags": ["topics"],
            "responses": {"200": _json("TopicList"), **_errors("401", "403")},
        }
    },
}


@cache
def schemas() -> dict[str, Any]:
    """SCHEMAS with the voice list filled in from the audio whitelist."""
    filled = json.loads(json.dumps(SCHEMAS))
    voices = announcements.voice_names()
    for name in ("AnnouncementInput", "AnnouncementPatch"):
        filled[name]["properties"]["voice"]["enum"] = voices
    return filled


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of this API."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dalaba (大喇叭) API",
            "version": "1.0.0",
            "description": "Announcements for village loudspeakers and group chats, their review "
            "workflow, and the township grid. Authenticate with `Authorization: Bearer <token>` "
            "(`dalaba api-token USER`); the token carries its owner's role. Errors are JSON: "
            '`{"error": {"code", "message", "fields"}}`, messages in the user\'s language.',
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "announcements"},
            {"name": "areas"},
            {"name": "topics"},
            {"name": "meta"},
        ],
        "paths": PATHS,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
            "responses": RESPONSES,
            "parameters": PARAMETERS,
        },
    }


# --- Errors ----------------------------------------------------------------------------------


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


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):  # type: ignore[no-untyped-def]
    _rollback()
    return _error_body(exc.status, ERROR_CODES[exc.status], exc.message.render(_))


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError):  # type: ignore[no-untyped-def]
    _rollback()
    if isinstance(exc, ValidationError):
        return _error_body(400, "invalid_input", exc.message.render(_), exc.render(_))
    status = {NotFound: 404, PermissionDenied: 403, WorkflowError: 409, Conflict: 409}.get(
        type(exc), 400
    )
    return _error_body(status, ERROR_CODES[status], exc.message.render(_))


@bp.errorhandler(IntegrityError)
def _integrity_error(exc: IntegrityError):  # type: ignore[no-untyped-def]
    # A concurrent write won the race (e.g. the same area name twice at once).
    _rollback()
    return _error_body(409, "conflict", _("数据已被其他人修改，请刷新后重试"))


@bp.before_request
def _limit_body() -> None:
    request.max_content_length = MAX_REQUEST_BYTES


# --- Reading requests ------------------------------------------------------------------------

_TYPE_MESSAGES = {
    "string": N_("应为文字（字符串）"),
    "integer": N_("应为整数"),
    "boolean": N_("应为 true 或 false"),
    "array": N_("应为数组"),
    "object": N_("应为对象"),
}
_PATTERN_MESSAGES = {TIME_PATTERN: N_("应为 HH:MM 格式的时间")}


def _is_type(value: Any, kind: str) -> bool:
    match kind:
        case "null":
            return value is None
        case "string":
            return isinstance(value, str)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "boolean":
            return isinstance(value, bool)
        case "array":
            return isinstance(value, list)
        case "object":
            return isinstance(value, dict)
    return False


def _shape_error(schema: Mapping[str, Any], value: Any) -> Message | None:
    """The first way ``value`` breaks ``schema``'s shape (type, format, enum, range, items).

    Lengths and required fields are left to the services, whose messages name the field's
    label and count what is left after trimming.
    """
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is_type(value, k) for k in kinds):
            main = next(k for k in kinds if k != "null")
            return Message(_TYPE_MESSAGES[main])
    if value is None:
        return None
    if "enum" in schema and value not in schema["enum"]:
        shown = "、".join(map(str, schema["enum"]))
        return Message(N_("应为以下之一：{values}"), {"values": shown})
    if schema.get("format") == "date":
        try:
            if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
                raise ValueError
            date.fromisoformat(value)
        except ValueError:
            return Message(N_("应为 YYYY-MM-DD 格式的有效日期"))
    if "pattern" in schema and not re.search(schema["pattern"], value):
        return Message(_PATTERN_MESSAGES.get(schema["pattern"], N_("格式不正确")))
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None:
            return Message(N_("应不小于 {lo}"), {"lo": lo})
        return Message(N_("应在 {lo} 到 {hi} 之间"), {"lo": lo, "hi": hi})
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return Message(N_("至少需要 {n} 项"), {"n": schema["minItems"]})
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return Message(N_("最多 {n} 项"), {"n": schema["maxItems"]})
        if "items" in schema:
            for item in value:
                problem = _shape_error(schema["items"], item)
                if problem is not None:
                    return problem
        if schema.get("uniqueItems") and len({json.dumps(v) for v in value}) < len(value):
            return Message(N_("不能有重复项"))
    return None


def _check_fields(schema: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Message]:
    """Field errors for an object against a closed object schema from SCHEMAS."""
    errors: dict[str, Message] = {}
    properties = schema["properties"]
    unknown = [k for k in data if k not in properties]
    for name in unknown[:20]:
        shown = name if len(name) <= 60 else name[:60] + "…"
        errors[shown] = Message(
            N_("不支持的字段；可用字段：{names}"), {"names": "、".join(properties)}
        )
    for name, value in data.items():
        if name in properties:
            problem = _shape_error(properties[name], value)
            if problem is not None:
                errors[name] = problem
    return errors


def _json_body(*, required: bool = True) -> dict[str, Any]:
    """The request's JSON object; an empty body is ``{}`` when ``required`` is false."""
    raw = request.get_data(cache=True)
    if not request.is_json:
        if raw or required:
            raise ApiError(415, Message(DEFAULT_MESSAGES[415]))
        return {}
    if not raw.strip():
        if required:
            raise ApiError(400, Message(N_("请求体为空，应为 JSON 对象")))
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, Message(N_("请求体不是有效的 JSON（UTF-8）"))) from exc
    if not isinstance(data, dict):
        raise ApiError(400, Message(N_("请求体应为 JSON 对象（{...}）")))
    return data


def _checked_body(schema_name: str, *, required: bool = True) -> dict[str, Any]:
    data = _json_body(required=required)
    problems = _check_fields(schemas()[schema_name], data)
    if problems:
        raise ValidationError(problems)
    return data


def _service_content(data: Mapping[str, Any]) -> dict[str, Any]:
    """API content fields → the services' input (channels become two switches)."""
    out = {k: v for k, v in data.items() if k != "channels"}
    if "channels" in data:
        out["to_loudspeaker"] = "loudspeaker" in data["channels"]
        out["to_chats"] = "chats" in data["channels"]
    return out


def _content_input(schema_name: str, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The checked content of a write merged onto ``base``; raises naming every bad field.

    Fields with a wrong shape are left out and the rest still go through the services'
    checks, so one answer names every bad field.
    """
    data = _json_body()
    schema = schemas()[schema_name]
    problems = _check_fields(schema, data)
    good = {k: v for k, v in data.items() if k in schema["properties"]}
    good = {k: v for k, v in good.items() if k not in problems}
    merged = _service_content({**(base or {}), **good})
    if problems:
        try:
            announcements.parse_content(db(), merged, today=_today())
        except ValidationError as exc:
            for name, message in exc.errors.items():
                problems.setdefault(name, message)
        raise ValidationError(problems)
    return merged


def _query(allowed: set[str]) -> dict[str, str]:
    errors: dict[str, Message] = {}
    values: dict[str, str] = {}
    for name in request.args:
        given = request.args.getlist(name)
        if name not in allowed:
            errors[name[:60]] = Message(
                N_("不支持的查询参数；可用参数：{names}"), {"names": "、".join(sorted(allowed))}
            )
        elif len(given) > 1:
            errors[name] = Message(N_("只能给一个值"))
        else:
            values[name] = given[0]
    if errors:
        raise ValidationError(errors)
    return values


def _int_arg(errors: Errors, name: str, raw: str | None, lo: int, hi: int) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if not re.fullmatch(r"[0-9]{1,10}", text):
        errors.add(name, N_("应为整数"))
        return None
    number = int(text)
    if not lo <= number <= hi:
        errors.add(name, N_("应在 {lo} 到 {hi} 之间"), lo=lo, hi=hi)
        return None
    return number


def _today() -> date:
    from cms.web import today

    return today(settings())


def _announcement(announcement_id: int) -> Announcement:
    return announcements.get(db(), announcement_id)


def _created(body: dict[str, Any], location: str):  # type: ignore[no-untyped-def]
    return body, 201, {"Location": location}


# --- Representations ---------------------------------------------------------------------


def _dt(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _user_ref(user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.id, "username": user.username, "display_name": user.display_name}


def _area_refs(rev: Revision) -> list[dict[str, Any]]:
    return [{"id": a.id, "name": a.name} for a in rev.areas]


def _revision(rev: Revision) -> dict[str, Any]:
    return {
        "number": rev.number,
        "title": rev.title,
        "body": rev.body,
        "spoken_text": rev.spoken_text,
        "topic_id": rev.topic_id,
        "topic_name": rev.topic.name if rev.topic else None,
        "priority": rev.priority.value,
        "area_ids": [a.id for a in rev.areas],
        "areas": _area_refs(rev),
        "channels": rev.channels,
        "start_date": rev.start_date.isoformat(),
        "end_date": rev.end_date.isoformat(),
        "repeats": rev.repeats,
        "chat_post_time": rev.chat_post_time.strftime("%H:%M") if rev.chat_post_time else None,
        "voice": rev.voice,
        "rate": rev.rate,
        "author": _user_ref(rev.author),
        "created_at": _dt(rev.created_at),
    }


def _summary(ann: Announcement, today: date) -> dict[str, Any]:
    rev = ann.current
    phase = ann.phase(today)
    return {
        "id": ann.id,
        "status": ann.status.value,
        "phase": phase,
        "phase_label": _(STATUS_LABELS[phase]),
        "title": rev.title,
        "topic_id": rev.topic_id,
        "priority": rev.priority.value,
        "areas": _area_refs(rev),
        "channels": rev.channels,
        "start_date": rev.start_date.isoformat(),
        "end_date": rev.end_date.isoformat(),
        "latest_revision_number": rev.number,
        "approved_revision_number": ann.approved_revision.number if ann.approved_revision else None,
        "created_at": _dt(ann.created_at),
        "updated_at": _dt(ann.updated_at),
    }


def _detail(ann: Announcement) -> dict[str, Any]:
    session = db()
    session.flush()
    session.refresh(ann)
    approved = ann.approved_revision
    return {
        **_summary(ann, _today()),
        "created_by": _user_ref(ann.created_by),
        "submitted_by": _user_ref(session.get(User, ann.submitted_by_id))
        if ann.submitted_by_id
        else None,
        "reviewed_by": _user_ref(ann.reviewed_by),
        "reviewed_at": _dt(ann.reviewed_at),
        "review_comment": ann.review_comment,
        "withdrawn_at": _dt(ann.withdrawn_at),
        "revision_count": len(ann.revisions),
        "latest_revision": _revision(ann.current),
        "approved_revision": _revision(approved) if approved else None,
    }


def _area(area: Area, names: Mapping[int, str]) -> dict[str, Any]:
    path = areas.ancestor_ids(area)
    return {
        "id": area.id,
        "name": area.name,
        "kind": area.kind.value,
        "kind_label": _(AREA_KIND_LABELS[area.kind]),
        "parent_id": area.parent_id,
        "path": path,
        "depth": len(path) - 1,
        "full_name": " / ".join(names[i] for i in path if i in names),
    }


def _area_names(session: Any, among: list[Area] | None = None) -> dict[int, str]:
    if among is None:
        return {i: n for i, n in session.execute(select(Area.id, Area.name))}
    ids = {i for a in among for i in areas.ancestor_ids(a)}
    return {i: n for i, n in session.execute(select(Area.id, Area.name).where(Area.id.in_(ids)))}


# --- Views -------------------------------------------------------------------------------


@bp.get("/openapi.json")
@rule(PUBLIC)
def openapi() -> Any:
    """The OpenAPI document of this API."""
    return openapi_document()


@bp.get("/announcements")
@rule(*READERS)
def list_announcements() -> Any:
    """Announcements, filtered and paginated."""
    session = db()
    args = _query({"status", "topic_id", "area_id", "q", "page", "per_page"})
    errors = Errors()
    status = args.get("status", "").strip() or None
    if status is not None and status not in PHASES:
        errors.add("status", N_("应为以下之一：{values}"), values="、".join(PHASES))
    topic_id = _int_arg(errors, "topic_id", args.get("topic_id"), 1, MAX_ID)
    area_id = _int_arg(errors, "area_id", args.get("area_id"), 1, MAX_ID)
    page = _int_arg(errors, "page", args.get("page"), 1, MAX_PAGE) or 1
    per_page = _int_arg(errors, "per_page", args.get("per_page"), 1, MAX_PER_PAGE)
    q = (args.get("q") or "").strip() or None
    if q is not None:
        q = clean_text(errors, "q", q, label=N_("搜索词"), max_len=MAX_QUERY) or None
    if topic_id is not None and "topic_id" not in errors and session.get(Topic, topic_id) is None:
        errors.add("topic_id", N_("主题 {id} 不存在"), id=topic_id)
    if area_id is not None and "area_id" not in errors and session.get(Area, area_id) is None:
        errors.add("area_id", N_("区域 {id} 不存在"), id=area_id)
    errors.raise_if_any()
    per_page = per_page or DEFAULT_PER_PAGE
    today = _today()
    stmt = announcements.search(
        session, today=today, status=status, topic_id=topic_id, area_id=area_id, q=q
    )
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.scalars(
        stmt.options(
            selectinload(Announcement.latest_revision).selectinload(Revision.areas),
            selectinload(Announcement.approved_revision),
        )
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return {
        "items": [_summary(a, today) for a in rows],
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": (total + per_page - 1) // per_page,
    }


@bp.post("/announcements")
@rule(*EDITORS)
def create_announcement() -> Any:
    """Create a draft."""
    data = _content_input("AnnouncementInput")
    ann = announcements.create(db(), g.user, data, today=_today())
    db().commit()
    return _created(_detail(ann), url_for("api.get_announcement", announcement_id=ann.id))


@bp.get(f"/announcements/<{ID}:announcement_id>")
@rule(*READERS)
def get_announcement(announcement_id: int) -> Any:
    """One announcement."""
    return _detail(_announcement(announcement_id))


def _current_content(ann: Announcement) -> dict[str, Any]:
    rev = ann.current
    return {
        "title": rev.title,
        "body": rev.body,
        "spoken_text": rev.spoken_text,
        "topic_id": rev.topic_id,
        "priority": rev.priority.value,
        "area_ids": [a.id for a in rev.areas],
        "channels": rev.channels,
        "start_date": rev.start_date.isoformat(),
        "end_date": rev.end_date.isoformat(),
        "repeats": rev.repeats,
        "chat_post_time": rev.chat_post_time.strftime("%H:%M") if rev.chat_post_time else None,
        "voice": rev.voice,
        "rate": rev.rate,
    }


def _edit(announcement_id: int, schema_name: str) -> Any:
    ann = _announcement(announcement_id)
    base = _current_content(ann) if schema_name == "AnnouncementPatch" else None
    data = _content_input(schema_name, base)
    announcements.update(db(), g.user, ann, data, today=_today())
    db().commit()
    return _detail(ann)


@bp.put(f"/announcements/<{ID}:announcement_id>")
@rule(*EDITORS)
def replace_announcement(announcement_id: int) -> Any:
    """Edit with the whole new content."""
    return _edit(announcement_id, "AnnouncementInput")


@bp.patch(f"/announcements/<{ID}:announcement_id>")
@rule(*EDITORS)
def patch_announcement(announcement_id: int) -> Any:
    """Edit the given fields."""
    return _edit(announcement_id, "AnnouncementPatch")


@bp.post(f"/announcements/<{ID}:announcement_id>/submit")
@rule(*EDITORS)
def submit_announcement(announcement_id: int) -> Any:
    """Submit for review."""
    ann = _announcement(announcement_id)
    _checked_body("SubmitInput", required=False)
    announcements.submit(db(), g.user, ann)
    db().commit()
    return _detail(ann)


@bp.post(f"/announcements/<{ID}:announcement_id>/approve")
@rule(*REVIEWERS)
def approve_announcement(announcement_id: int) -> Any:
    """Approve the latest revision."""
    ann = _announcement(announcement_id)
    data = _checked_body("ApproveInput", required=False)
    announcements.approve(db(), g.user, ann, data.get("comment") or "")
    db().commit()
    return _detail(ann)


@bp.post(f"/announcements/<{ID}:announcement_id>/reject")
@rule(*REVIEWERS)
def reject_announcement(announcement_id: int) -> Any:
    """Send back to draft with a comment."""
    ann = _announcement(announcement_id)
    data = _checked_body("RejectInput", required=False)
    announcements.reject(db(), g.user, ann, data.get("comment") or "")
    db().commit()
    return _detail(ann)


@bp.post(f"/announcements/<{ID}:announcement_id>/withdraw")
@rule(*WITHDRAWERS)
def withdraw_announcement(announcement_id: int) -> Any:
    """Stop it everywhere."""
    ann = _announcement(announcement_id)
    data = _checked_body("WithdrawInput", required=False)
    announcements.withdraw(db(), g.user, ann, data.get("reason") or "")
    db().commit()
    return _detail(ann)


@bp.get(f"/announcements/<{ID}:announcement_id>/revisions")
@rule(*READERS)
def list_revisions(announcement_id: int) -> Any:
    """Every revision."""
    ann = _announcement(announcement_id)
    return {"items": [_revision(r) for r in ann.revisions]}


@bp.get(f"/announcements/<{ID}:announcement_id>/revisions/<{ID}:number>")
@rule(*READERS)
def get_revision(announcement_id: int, number: int) -> Any:
    """One revision."""
    ann = _announcement(announcement_id)
    return _revision(announcements.revision(db(), ann, number))


@bp.get("/areas")
@rule(*ANY_USER)
def list_areas() -> Any:
    """The grid, parents first."""
    session = db()
    names = _area_names(session)
    return {"items": [_area(a, names) for a in areas.all_areas(session)]}


@bp.get(f"/areas/<{ID}:area_id>")
@rule(*ANY_USER)
def get_area(area_id: int) -> Any:
    """One area with its children."""
    session = db()
    area = areas.get_area(session, area_id)
    names = _area_names(session, [area, *area.children])
    return {**_area(area, names), "children": [_area(c, names) for c in area.children]}


@bp.post("/areas")
@rule(Role.ADMIN)
def create_area() -> Any:
    """Add an area."""
    session = db()
    data = _checked_body("AreaInput")
    area = areas.create_area(
        session,
        g.user,
        name=data.get("name"),
        kind=data.get("kind"),
        parent_id=data.get("parent_id"),
    )
    session.commit()
    names = _area_names(session, [area])
    return _created(_area(area, names), url_for("api.get_area", area_id=area.id))


@bp.get("/topics")
@rule(*READERS)
def list_topics() -> Any:
    """Announcement topics."""
    return {
        "items": [{"id": t.id, "name": t.name, "active": t.active} for t in topics.all_topics(db())]
    }
