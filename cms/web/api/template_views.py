"""The API's notice templates: list them, and make a draft from one."""

from __future__ import annotations

from typing import Any

from flask import g, url_for

from cms.roles import EDITORS, STAFF
from cms.services import templates
from cms.web.api.representations import service_input
from cms.web.api.validation import checked_body
from cms.web.api.views import _created, _detail, _today, bp
from cms.web.auth import rule
from cms.web.db import commits, db


def template_json(t: templates.Template) -> dict[str, Any]:
    return {
        "id": t.key,
        "name": t.name,
        "title": t.title,
        "body": t.body,
        "shipped": t.shipped,
        "office": t.office,
        "fields": [{"name": f.name, "kind": f.kind.value} for f in t.fields],
    }


@bp.get("/templates")
@rule(*STAFF)
def list_templates() -> Any:
    """The templates the token's owner may use."""
    return {"items": [template_json(t) for t in templates.available(db(), g.user)]}


@bp.post("/templates/<template_id>/drafts")
@rule(*EDITORS)
@commits
def draft_from_template(template_id: str) -> Any:
    """A new draft from a filled template."""
    template = templates.get(db(), g.user, template_id)
    data = checked_body()
    content = service_input(data["content"])
    ann = templates.draft_from(db(), g.user, template, data["fields"], content, today=_today())
    return _created(_detail(ann), url_for("api.get_announcement", announcement_id=ann.id))
