"""Reading requests: JSON bodies and query parameters checked against the OpenAPI document.

The document the API serves is the one source of truth: a request is validated with
``jsonschema`` against the request body schema (or the query parameters) of the operation
that serves it, and each error becomes the localized message of the field it concerns.

Lengths and required fields are left to the services, whose messages name the field's
label and count what is left after trimming (so "   " is "please fill in the title", not
"too short"); everything else the schema says (types, formats, enums, ranges, items,
unknown fields) is answered here, every bad field at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from flask import request
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema import ValidationError as SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import extend
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cms.services.errors import N_, Message, ValidationError
from cms.web.api.errors import DEFAULT_MESSAGES, ApiError
from cms.web.api.openapi import (
    DATE_PATTERN,
    FILLED_LINE_PATTERN,
    FILLED_TEXT_PATTERN,
    LINE_PATTERN,
    TEXT_PATTERN,
    TIME_PATTERN,
    shared_document,
)

DOCUMENT_URI = "urn:dalaba:openapi"

# JSON integers only: 2.0 and true are not ids or counts (jsonschema accepts 2.0 as integer).
_TYPES = Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
)
_Validator = extend(Draft202012Validator, type_checker=_TYPES)
_FORMATS = FormatChecker(["date"])

# Left to the services, which say it better (see the module docstring).
_DEFERRED = {"minLength", "maxLength", "required"}
# When a value breaks several rules, the first of these is the one it is told about.
_ORDER = ["type", "enum", "format", "pattern", "minimum", "maximum", "minItems", "maxItems"]

_TYPE_MESSAGES = {
    "string": N_("应为文字（字符串）"),
    "integer": N_("应为整数"),
    "boolean": N_("应为 true 或 false"),
    "array": N_("应为数组"),
    "object": N_("应为对象"),
}
_PATTERN_MESSAGES = {TIME_PATTERN: N_("应为 HH:MM 格式的时间")}
# Patterns the document states for clients, whose breach the services explain better.
DEFERRED_PATTERNS = {
    TEXT_PATTERN,
    LINE_PATTERN,
    FILLED_TEXT_PATTERN,
    FILLED_LINE_PATTERN,
    DATE_PATTERN,
}
_FORMAT_MESSAGES = {"date": N_("应为 YYYY-MM-DD 格式的有效日期")}
UNKNOWN_FIELD = N_("不支持的字段；可用字段：{names}")
UNKNOWN_PARAMETER = N_("不支持的查询参数；可用参数：{names}")
MAX_NAMED_UNKNOWN = 20


@cache
def _registry() -> Registry[Any]:
    resource = Resource.from_contents(shared_document(), default_specification=DRAFT202012)
    return Registry().with_resource(DOCUMENT_URI, resource)


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


@cache
def validator(pointer: str) -> Validator:
    """A validator for the schema at ``pointer`` (a JSON pointer) in the OpenAPI document."""
    return _Validator(
        {"$ref": f"{DOCUMENT_URI}#{pointer}"}, registry=_registry(), format_checker=_FORMATS
    )


def resolve(pointer: str) -> Any:
    """The part of the document at ``pointer``, following ``$ref``s."""
    resolver = _registry().resolver()
    contents = resolver.lookup(f"{DOCUMENT_URI}#{pointer}").contents
    while isinstance(contents, dict) and "$ref" in contents:
        contents = resolver.lookup(f"{DOCUMENT_URI}{contents['$ref']}").contents
    return contents


def message_for(error: SchemaError) -> Message:
    """The localized message for one jsonschema error."""
    # The stubs type these as "maybe unset"; an error from iter_errors always has them.
    value: Any = error.validator_value
    schema: Any = error.schema
    match error.validator:
        case "type":
            kinds = [value] if isinstance(value, str) else list(value)
            main = next((k for k in kinds if k != "null"), "object")
            return Message(_TYPE_MESSAGES.get(main, N_("格式不正确")))
        case "enum":
            return Message(N_("应为以下之一：{values}"), {"values": "、".join(map(str, value))})
        case "format":
            return Message(_FORMAT_MESSAGES.get(value, N_("格式不正确")))
        case "pattern":
            return Message(_PATTERN_MESSAGES.get(value, N_("格式不正确")))
        case "minimum" | "maximum":
            lo, hi = schema.get("minimum"), schema.get("maximum")
            if hi is None:
                return Message(N_("应不小于 {lo}"), {"lo": lo})
            return Message(N_("应在 {lo} 到 {hi} 之间"), {"lo": lo, "hi": hi})
        case "minItems":
            return Message(N_("至少需要 {n} 项"), {"n": value})
        case "maxItems":
            return Message(N_("最多 {n} 项"), {"n": value})
        case "uniqueItems":
            return Message(N_("不能有重复项"))
    return Message(N_("格式不正确"))


def _rank(error: SchemaError) -> int:
    name = str(error.validator)
    return _ORDER.index(name) if name in _ORDER else len(_ORDER)


def _field_messages(errors: Iterable[SchemaError], name: str | None = None) -> dict[str, Message]:
    """One message per field (the first path element, or ``name``) from jsonschema errors."""
    best: dict[str, SchemaError] = {}
    for error in errors:
        if error.validator in _DEFERRED or error.validator == "additionalProperties":
            continue
        if error.validator == "pattern" and error.validator_value in DEFERRED_PATTERNS:
            continue  # the services name the very characters, or the date's range
        field = name if name is not None else str(error.path[0]) if error.path else None
        if field is None:
            continue
        if field not in best or _rank(error) < _rank(best[field]):
            best[field] = error
    return {field: message_for(error) for field, error in best.items()}


def _unknown(names: list[str], allowed: Iterable[str], msgid: str) -> dict[str, Message]:
    shown = "、".join(allowed)
    out: dict[str, Message] = {}
    for name in names[:MAX_NAMED_UNKNOWN]:
        out[name if len(name) <= 60 else name[:60] + "…"] = Message(msgid, {"names": shown})
    return out


def body_problems(pointer: str, data: Mapping[str, Any]) -> dict[str, Message]:
    """Each field of ``data`` that breaks the object schema at ``pointer``, with its message."""
    properties = resolve(pointer).get("properties", {})
    problems = _unknown([k for k in data if k not in properties], properties, UNKNOWN_FIELD)
    problems.update(_field_messages(validator(pointer).iter_errors(data)))
    return problems


def _operation() -> tuple[str, str]:
    """The OpenAPI path and method of the request being served."""
    assert request.url_rule is not None
    rule = request.url_rule.rule.removeprefix("/api/v1")
    return re.sub(r"<(?:[^:<>]+:)?(\w+)>", r"{\1}", rule), request.method.lower()


def _request_body() -> tuple[str, bool]:
    """The pointer to the serving operation's request body schema, and whether it is required."""
    path, method = _operation()
    body = shared_document()["paths"][path][method]["requestBody"]
    return _pointer(
        "paths", path, method, "requestBody", "content", "application/json", "schema"
    ), bool(body.get("required"))


def json_body() -> tuple[dict[str, Any], str]:
    """The request's JSON object and the pointer to its schema; an optional empty body is ``{}``."""
    pointer, required = _request_body()
    raw = request.get_data(cache=True)
    if not request.is_json:
        if raw or required:
            raise ApiError(415, Message(DEFAULT_MESSAGES[415]))
        return {}, pointer
    if not raw.strip():
        if required:
            raise ApiError(400, Message(N_("请求体为空，应为 JSON 对象")))
        return {}, pointer
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, Message(N_("请求体不是有效的 JSON（UTF-8）"))) from exc
    if not isinstance(data, dict):
        raise ApiError(400, Message(N_("请求体应为 JSON 对象（{...}）")))
    return _integral(data), pointer


def _integral(value: Any) -> Any:
    """JSON numbers with no fraction (``7.0``) as integers: JSON Schema calls them integers,
    so the services take them as such."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


def checked_body() -> dict[str, Any]:
    """The request's JSON object, valid for the operation's schema; raises naming every bad field."""
    data, pointer = json_body()
    problems = body_problems(pointer, data)
    if problems:
        raise ValidationError(problems)
    return data


def _query_value(schema: Mapping[str, Any], text: str) -> Any:
    """A query string value as JSON would carry it: digits for an integer become a number."""
    if schema.get("type") == "integer" and re.fullmatch(r"[0-9]{1,30}", text):
        return int(text)
    return text


def checked_query() -> dict[str, Any]:
    """The query parameters, each valid for its schema in the operation (a blank one is not).

    Raises naming every unknown, repeated or invalid parameter.
    """
    path, method = _operation()
    item = shared_document()["paths"][path]
    where: dict[str, str] = {}
    for at in ((path,), (path, method)):
        node = item if len(at) == 1 else item[method]
        for index, parameter in enumerate(node.get("parameters", [])):
            at_pointer = _pointer("paths", *at, "parameters", str(index))
            if "$ref" in parameter:
                at_pointer = parameter["$ref"].removeprefix("#")
                parameter = resolve(at_pointer)
            if parameter["in"] == "query":
                where[parameter["name"]] = at_pointer
    unknown = [name for name in request.args if name not in where]
    problems = _unknown([n[:60] for n in unknown], sorted(where), UNKNOWN_PARAMETER)
    values: dict[str, Any] = {}
    for name, pointer in where.items():
        given = request.args.getlist(name)
        if len(given) > 1:
            problems[name] = Message(N_("只能给一个值"))
        elif given and not given[0].strip():
            schema = resolve(pointer + "/schema")
            if schema.get("type") != "string" or "enum" in schema:
                # ?area_id= is not "no filter": a client that meant one gets told. (An empty
                # search text, ?q=, is no search.)
                problems[name] = Message(N_("不能为空：请给一个值，或者去掉这个参数"))
        elif given:
            schema = pointer + "/schema"
            value = _query_value(resolve(schema), given[0].strip())
            found = _field_messages(validator(schema).iter_errors(value), name)
            if found:
                problems.update(found)
            else:
                values[name] = value
    if problems:
        raise ValidationError(problems)
    return values
