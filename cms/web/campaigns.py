"""County campaigns: the townships' offers (adopt as is, or adapt) and the county's report."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cms import tree
from cms.models import Announcement, Area, AreaKind
from cms.roles import EDITORS, STAFF
from cms.services import campaigns as svc
from cms.services.announcements import STATUS_LABELS
from cms.services.errors import N_, NotFound
from cms.services.scope import Scope
from cms.web import today
from cms.web.auth import rule
from cms.web.db import db, settings, transaction
from cms.web.forms import form_id, message
from cms.web.sheets import csv_response, neutralise

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns")

REPORT_COLUMNS = (
    N_("县级活动"),
    N_("乡镇"),
    N_("村"),
    N_("采用方式"),
    N_("已生成节目"),
    N_("已下载"),
    N_("已确认播放"),
    N_("终端完整下载"),
    N_("已发到群聊"),
)


@bp.app_context_processor
def _menu() -> dict[str, Any]:
    """``has_county()`` for the menu: a single township's install shows no campaign pages."""

    def has_county() -> bool:
        if "has_county" not in g:
            g.has_county = (
                db().scalar(select(Area.id).where(Area.kind == AreaKind.COUNTY).limit(1))
                is not None
            )
        return bool(g.has_county)

    return {"has_county": has_county}


def _get(campaign_id: int) -> Announcement:
    try:
        return svc.get_offered(db(), g.user, campaign_id)
    except NotFound as exc:
        abort(404, description=message(exc))


def _towns(camp: Announcement) -> list[tuple[Area, Announcement | None]]:
    """The townships in the user's scope the campaign reaches, each with its copy."""
    if camp.approved_revision is None:
        return []
    scope = Scope.of(g.user)
    return [
        (town, svc.copy_of(db(), camp, town))
        for town in svc.townships(db(), camp.approved)
        if scope.contains(town)
    ]


@bp.get("/")
@rule(*STAFF)
def index() -> Any:
    """County campaigns: offered to the user's township, or drafted by the user's county."""
    town = svc.user_township(g.user)
    offered = (
        [(c, svc.copy_of(db(), c, town)) for c in svc.offered_to(db(), town)]
        if town is not None
        else []
    )
    own = svc.county_campaigns(db(), Scope.of(g.user))
    return render_template(
        "campaigns/index.html",
        town=town,
        offered=offered,
        own=[(c, _towns(c)) for c in own],
        labels=STATUS_LABELS,
        adoption_labels=svc.ADOPTION_LABELS,
        may_draft=svc.may_draft(g.user),
    )


@bp.get("/<int:campaign_id>")
@rule(*STAFF)
def show(campaign_id: int) -> Any:
    """One county campaign as approved by the county, and what each township made of it."""
    camp = _get(campaign_id)
    rev = camp.approved_revision or camp.current
    town = svc.user_township(g.user)
    in_scope = Scope.of(g.user).contains(camp.area)
    day = today(settings())
    phase = camp.phase(day)
    if not in_scope and camp.status.value in ("draft", "in_review") and camp.approved_revision:
        # A township sees the approved revision only, not the county's drafts of the next.
        pinned = camp.approved_revision
        phase = (
            "scheduled"
            if day < pinned.start_date
            else "finished"
            if day > pinned.end_date
            else "active"
        )
    return render_template(
        "campaigns/show.html",
        camp=camp,
        rev=rev,
        town=town,
        mine=svc.copy_of(db(), camp, town) if town is not None else None,
        towns=_towns(camp),
        in_scope=in_scope,
        phase=phase,
        labels=STATUS_LABELS,
        adoption_labels=svc.ADOPTION_LABELS,
    )


def _take(campaign_id: int, how: str) -> Any:
    camp = _get(campaign_id)
    town_id = form_id("township")
    town = db().get(Area, town_id) if town_id is not None else svc.user_township(g.user)
    if town is None or town.kind is not AreaKind.TOWNSHIP:
        flash(_("请选择乡镇"), "error")
        return redirect(url_for(".show", campaign_id=camp.id))
    try:
        with transaction(missing=True) as tx:
            if how == "adopt":
                copy = svc.adopt(db(), g.user, camp, town)
            else:
                copy = svc.adapt(db(), g.user, camp, town)
    except IntegrityError:
        # Two officers of the township took it up at the same moment: one copy per township.
        db().rollback()
        flash(_("本乡镇已经采用或改编过这个县级活动"), "error")
        return redirect(url_for(".show", campaign_id=camp.id))
    if not tx.ok:
        return redirect(url_for(".show", campaign_id=camp.id))
    if how == "adopt":
        flash(_("已照发：县里审核通过的内容将在本乡镇播出"), "success")
        return redirect(url_for("announcements.show", announcement_id=copy.id))
    flash(_("已复制为本乡镇的草稿：修改后提交本乡镇审核"), "success")
    return redirect(url_for("announcements.edit", announcement_id=copy.id))


@bp.post("/<int:campaign_id>/adopt")
@rule(*STAFF)
def adopt(campaign_id: int) -> Any:
    """Adopt the county's approved campaign as is (no second review)."""
    return _take(campaign_id, "adopt")


@bp.post("/<int:campaign_id>/adapt")
@rule(*EDITORS)
def adapt(campaign_id: int) -> Any:
    """Start the township's own adaptation of the campaign (a draft for township review)."""
    return _take(campaign_id, "adapt")


def _report_rows() -> list[svc.ReportRow]:
    scope = Scope.of(g.user)
    camps = svc.county_campaigns(db(), scope)
    town = svc.user_township(g.user)
    if town is not None:
        # A township's report: the campaigns offered to it, its own rows only.
        seen = {c.id for c in camps}
        camps += [c for c in svc.offered_to(db(), town) if c.id not in seen]
    return svc.report(db(), scope, camps)


@bp.get("/report")
@rule(*STAFF)
def report() -> Any:
    """Per township and village, what each county campaign built, was fetched, confirmed, posted."""
    return render_template(
        "campaigns/report.html", rows=_report_rows(), adoption_labels=svc.ADOPTION_LABELS
    )


@bp.get("/report.csv")
@rule(*STAFF)
def report_csv() -> Any:
    """The campaign report as CSV (UTF-8 with BOM so Excel shows the Chinese)."""
    rows: list[list[Any]] = []
    for r in _report_rows():
        town = tree.township_of(r.area)
        rows.append(
            [
                neutralise(r.campaign.current.title),
                neutralise(town.name if town else ""),
                neutralise(r.area.name) if r.area.kind is AreaKind.VILLAGE else "",
                _(svc.ADOPTION_LABELS[r.adoption]) if r.adoption else _("未采用"),
                r.built,
                r.downloaded,
                r.confirmed,
                r.boxes,
                r.posted,
            ]
        )
    day = today(settings()).isoformat()
    return csv_response(
        [_(c) for c in REPORT_COLUMNS], rows, f"县级活动_{day}.csv", f"campaigns_{day}.csv"
    )
