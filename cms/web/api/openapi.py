"""The OpenAPI 3.1 document of the API: the contract, and the schemas requests are checked against.

The announcement content schemas (``AnnouncementInput``, ``AnnouncementPatch`` and the
content part of ``Revision``) are generated from the content model
(:mod:`cms.services.content`), so a new field appears here without an edit in this module.
Requests are validated against this same document (:mod:`cms.web.api.validation`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from cms.models import AreaKind, Status
from cms.services import content as model
from cms.services.announcements import PHASES
from cms.services.content import CHANNELS, Kind, Spec
from cms.services.text import MAX_ID
from cms.web.api.errors import ERROR_CODES, MAX_REQUEST_BYTES

MAX_COMMENT = 2000
MAX_QUERY = 200
MAX_PAGE = 100_000
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 20
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_DATE = {"type": "string", "format": "date", "description": "YYYY-MM-DD"}
_DATETIME = {"type": "string", "format": "date-time"}
_USER_REF = {"anyOf": [_ref("UserRef"), {"type": "null"}]}
_CHANNELS = {
    "type": "array",
    "items": {"type": "string", "enum": list(CHANNELS)},
    "minItems": 1,
    "uniqueItems": True,
    "description": "Where it goes: loudspeaker (village loudspeakers and mobile "
    "speakers), chats (group chats).",
}


# Characters every text field refuses (cms.services.text.clean_text): C0 controls but tab
# and newline (CR is read as a newline), DEL and the C1 controls, surrogates, private use,
# noncharacters and the bidi embeddings, overrides and isolates. One line (a title) refuses
# newlines too. Written so that ECMA 262 and Python read the class alike; lone surrogates
# (which no UTF-8 text carries) are in the description only.
_REFUSED = (
    r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\ue000-\uf8ff"
    r"\ufdd0-\ufdef\ufffe\uffff\u202a-\u202e\u2066-\u2069"
)
# Beyond the BMP: the noncharacters at the end of planes 1–14 and planes 15–16 (private use),
# as the characters themselves (Python and ECMA 262 with the u flag read them alike).
_REFUSED += "".join(
    f"{chr(p * 0x10000 + 0xFFFE)}-{chr(p * 0x10000 + 0xFFFF)}" for p in range(1, 15)
)
_REFUSED += "\U000f0000-\U0010ffff"
TEXT_PATTERN = rf"^[^{_REFUSED}]*$"
LINE_PATTERN = rf"^[^{_REFUSED}\n\r]*$"
# A required text keeps something after trimming: one character that is not a space.
FILLED_TEXT_PATTERN = rf"^[^{_REFUSED}]*[^{_REFUSED}\s][^{_REFUSED}]*$"
FILLED_LINE_PATTERN = rf"^[^{_REFUSED}\n\r]*[^{_REFUSED}\s][^{_REFUSED}\n\r]*$"
REFUSED_NOTE = (
    " Refused (400): control characters (C0 but tab and newline, DEL, C1), surrogates, "
    "private-use characters (U+E000–U+F8FF and planes 15–16), noncharacters, and bidi "
    "controls (U+202A–U+202E, U+2066–U+2069)."
)
# Dates the server accepts: 2000-01-01 to 2100-12-31 (cms.services.text.MIN_DATE/MAX_DATE).
DATE_PATTERN = r"^(20[0-9]{2}|2100)-[0-9]{2}-[0-9]{2}$"


def _field_schema(s: Spec, *, saved: bool) -> dict[str, Any]:
    """The JSON schema of one content field; ``saved``: as stored then, for responses.

    A saved revision keeps what was valid when it was written: later rules (a voice taken
    off the list, the cap on target areas per request) do not apply to it.
    """
    schema: dict[str, Any]
    match s.kind:
        case Kind.LINE | Kind.TEXT:
            schema = {"type": "string", "maxLength": s.max_len}
            line = s.kind is Kind.LINE
            if not saved and s.required:
                schema["pattern"] = FILLED_LINE_PATTERN if line else FILLED_TEXT_PATTERN
            elif not saved:
                schema["pattern"] = LINE_PATTERN if line else TEXT_PATTERN
            if s.required:
                schema["minLength"] = 1
        case Kind.REF:
            schema = {"type": "integer"} if saved else dict(_ID)
        case Kind.IDS:
            schema = {"type": "array", "items": _ID}
            if s.required:
                schema["minItems"] = 1
            if s.max_items and not saved:
                schema["maxItems"] = s.max_items
        case Kind.CHOICE:
            schema = {"type": "string"}
            if s.stable_choices or not saved:
                schema["enum"] = s.choice_values()
        case Kind.DATE:
            schema = dict(_DATE) if saved else {**_DATE, "pattern": DATE_PATTERN}
        case Kind.INT:
            schema = {"type": "integer", "minimum": s.lo, "maximum": s.hi}
        case Kind.TIME:
            schema = {"type": "string", "pattern": TIME_PATTERN}
        case Kind.SWITCH:
            return dict(_CHANNELS)
    if s.default is not None:
        schema["default"] = s.default
    if s.doc:
        schema["description"] = s.doc
    if s.kind in (Kind.LINE, Kind.TEXT) and not saved:
        schema["description"] = schema.get("description", "") + REFUSED_NOTE
    if not s.required and s.kind is not Kind.IDS:
        schema = _nullable(schema)
    return schema


def content_properties(*, saved: bool = False) -> dict[str, Any]:
    """The content fields as the API names them: the switches become one ``channels`` list."""
    out: dict[str, Any] = {}
    for s in model.SPECS:
        name = "channels" if s.kind is Kind.SWITCH else s.name
        out.setdefault(name, _field_schema(s, saved=saved))
    return out


def content_required() -> list[str]:
    """The fields a whole new content must give (those with no default)."""
    names = [
        "channels" if s.kind is Kind.SWITCH else s.name
        for s in model.SPECS
        if s.kind is Kind.SWITCH or (s.required and s.default is None)
    ]
    return list(dict.fromkeys(names))


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
    "priority": content_properties()["priority"],
    "areas": {"type": "array", "items": _ref("AreaRef")},
    "channels": _CHANNELS,
    "start_date": _DATE,
    "end_date": _DATE,
    "latest_revision_number": {"type": "integer"},
    "approved_revision_number": _nullable({"type": "integer"}),
    "campaign": {
        "type": "boolean",
        "description": "A county campaign: it goes out only through its townships' copies.",
    },
    "origin_id": _nullable(
        {"type": "integer", "description": "For a township's copy: the county campaign's id."}
    ),
    "adoption": _nullable(
        {
            "type": "string",
            "enum": ["adopted", "adapted", None],
            "description": "How the township took the campaign up: as is, or its own revision.",
        }
    ),
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
    # Notice templates (cms.services.templates).
    "TemplateField": _object(
        {
            "name": {"type": "string"},
            "kind": {
                "type": "string",
                "enum": ["date", "time", "phone", "amount", "text"],
                "description": "date: YYYY-MM-DD; time: HH:MM; phone: a mobile or fixed-line "
                "number; amount: yuan, up to two decimals; text: one line.",
            },
        }
    ),
    "Template": _object(
        {
            "id": {"type": "string", "description": "s-… for the shipped library, else a number."},
            "name": {"type": "string"},
            "title": {"type": "string", "description": "With {field} placeholders."},
            "body": {"type": "string", "description": "With {field} placeholders."},
            "shipped": {"type": "boolean"},
            "office": _nullable({"type": "string"}),
            "fields": {"type": "array", "items": _ref("TemplateField")},
        }
    ),
    "TemplateList": _object({"items": {"type": "array", "items": _ref("Template")}}),
    "TemplateDraftInput": _object(
        {
            "fields": {
                "type": "object",
                "additionalProperties": {"type": "string", "maxLength": 100},
                "description": "A value for every field of the template, by name.",
            },
            "content": {
                **_ref("AnnouncementPatch"),
                "description": "The rest of the draft (area_ids, dates, channels …); the "
                "title and body come from the filled template.",
            },
        },
        required=["fields", "content"],
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
    "NotFound": _error_response(
        "No such announcement, revision or area (or not the caller's): every method on it "
        "answers 404, as GET does."
    ),
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
            "description": f"Roles: {roles}. An empty body (no content type needed) counts "
            "as {}; a required field it lacks is named in the 400 answer.",
            "tags": ["announcements"],
            "parameters": [_param("AnnouncementId")],
            "requestBody": _body(schema, required=False),
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
            "description": "Roles: admin, editor, reviewer. Unknown, repeated or empty "
            "parameters (`?area_id=`) are refused with 400 naming them; so are a topic_id or "
            "area_id that does not exist (or lies outside the caller's area).",
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
                {
                    "name": "q",
                    "in": "query",
                    "schema": {"type": "string", "maxLength": MAX_QUERY, "pattern": LINE_PATTERN},
                    "description": "Words in the title or text; empty: no search." + REFUSED_NOTE,
                },
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
        "submit",
        "Submit a draft for review (400 on area_ids when it reaches no outlet, chat or account)",
        "SubmitInput",
        "admin, editor",
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
    "/templates": {
        "get": {
            "operationId": "listTemplates",
            "summary": "Notice templates: the shipped library, the county's and the township's",
            "description": "Roles: admin, editor, reviewer.",
            "tags": ["templates"],
            "responses": {"200": _json("TemplateList"), **_errors("401", "403")},
        }
    },
    "/templates/{template_id}/drafts": {
        "parameters": [
            {
                "name": "template_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^(s-[a-z-]{1,40}|[1-9][0-9]{0,8})$"},
            }
        ],
        "post": {
            "operationId": "draftFromTemplate",
            "summary": "A new draft from a filled template (then submit it for review)",
            "description": "Roles: admin, editor. Every field is checked by its kind; bad "
            "ones are named in the 400 answer as field:NAME.",
            "tags": ["templates"],
            "requestBody": _body("TemplateDraftInput"),
            "responses": {
                "201": {
                    **_json("Announcement", "Created"),
                    "headers": {"Location": {"schema": {"type": "string"}}},
                },
                **_errors("400", "401", "403", "404", "413", "415"),
            },
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


CROSS_FIELD_RULES = (
    "Rules between fields, checked by the server (400 naming the field): end_date not "
    "before start_date, not in the past (Asia/Shanghai), and the window at most "
    f"{model.MAX_WINDOW_DAYS} days; channels including chats need chat_post_time; every "
    "id in area_ids and topic_id must exist (and lie in the caller's area)."
)


def _revision_properties() -> dict[str, Any]:
    return {
        "number": {"type": "integer", "minimum": 1},
        **content_properties(saved=True),
        "topic_name": _nullable({"type": "string"}),
        "areas": {"type": "array", "items": _ref("AreaRef")},
        "author": _ref("UserRef"),
        "created_at": _DATETIME,
    }


def schemas() -> dict[str, Any]:
    """The component schemas, the content ones generated from the content model."""
    return {
        **SCHEMAS,
        "AnnouncementInput": {
            **_object(content_properties(), required=content_required()),
            "description": CROSS_FIELD_RULES,
            # A chat post needs its time.
            "if": {
                "properties": {"channels": {"contains": {"const": "chats"}}},
                "required": ["channels"],
            },
            "then": {
                "required": ["chat_post_time"],
                "properties": {"chat_post_time": {"type": "string"}},
            },
        },
        "AnnouncementPatch": {
            **_object(content_properties(), required=[]),
            "description": "Only the given fields change; the rest come from the latest "
            "revision. The merged content must keep the rules of AnnouncementInput: "
            + CROSS_FIELD_RULES,
        },
        "Revision": _object(_revision_properties()),
    }


@cache
def _document() -> str:
    return json.dumps(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "dalaba (大喇叭) API",
                "version": "1.0.0",
                "description": "Announcements for village loudspeakers and group chats, their "
                "review workflow, and the township grid. Authenticate with "
                "`Authorization: Bearer <token>` (`dalaba api-token USER`); the token carries "
                "its owner's role. Errors are JSON: "
                '`{"error": {"code", "message", "fields"}}`, messages in the user\'s language. '
                "Request bodies and query parameters are validated against this document.",
            },
            "servers": [{"url": "/api/v1"}],
            "security": [{"bearerAuth": []}],
            "tags": [
                {"name": "announcements"},
                {"name": "areas"},
                {"name": "topics"},
                {"name": "templates"},
                {"name": "meta"},
            ],
            "paths": PATHS,
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
                "schemas": schemas(),
                "responses": RESPONSES,
                "parameters": PARAMETERS,
            },
        },
        ensure_ascii=False,
    )


@cache
def shared_document() -> Mapping[str, Any]:
    """The document, built once per process, for reading only (validation uses it)."""
    return json.loads(_document())


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of this API (a fresh copy: callers may change it)."""
    return json.loads(_document())
