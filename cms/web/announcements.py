"""Announcements: list, draft, edit, submit, review, history, withdraw."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, time
from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from audio.voices import VOICES
from cms import tree
from cms.models import Airtime, Announcement, Area, Revision, Status
from cms.roles import EDITORS, REVIEWERS, STAFF
from cms.services import airtime, breakin
from cms.services import announcements as svc
from cms.services import campaigns as campaigns_svc
from cms.services import publishing as publishing_svc
from cms.services import reach as reach_svc
from cms.services import speech as speech_svc
from cms.services.audit import ACTION_LABELS
from cms.services.content import MAX_AREA_IDS
from cms.services.errors import NotFound
from cms.services.scope import Scope
from cms.services.text import parse_date, parse_id
from cms.services.topics import all_topics
from cms.web import today
from cms.web.auth import Route, add_routes, rule
from cms.web.db import db, lock_released, read_only, settings, transaction
from cms.web.forms import (
    announcement_form_data,
    announcement_form_values,
    announcement_or_404,
    int_arg,
    message,
    paginate,
)
from cms.web.publishing import publisher_nouns
from cms.web.share import panel as share_panel

bp = Blueprint("announcements", __name__, url_prefix="/announcements")
PER_PAGE = 20
PLATFORMS = reach_svc.PLATFORM_LABELS


def _now() -> datetime:
    """The current time (UTC) for what the pages say about reach and status."""
    return settings().now()


def _reach_of(data: Mapping[str, Any], ann: Announcement | None) -> reach_svc.Reach | None:
    """The reach of the form as typed (None: no valid target yet). Lenient: a field that does
    not parse yet falls back to what the saved notice will get (today, no post time)."""
    ids = [i for i in (parse_id(raw) for raw in data.get("area_ids") or []) if i is not None]
    scope = svc.target_scope(g.user, ann)
    targets = [
        a
        for a in db().scalars(select(Area).where(Area.id.in_(ids[:MAX_AREA_IDS])))
        if scope.contains(a)
    ]
    if not targets:
        return None
    day = today(settings())
    start = parse_date(data.get("start_date")) or day
    end = parse_date(data.get("end_date")) or start
    raw_time = str(data.get("chat_post_time") or "").strip()
    try:
        post = time.fromisoformat(raw_time) if raw_time else None
    except ValueError:
        post = None
    chosen = str(data.get("airtime") or Airtime.ALL.value)
    plan = reach_svc.Plan(
        areas=targets,
        to_loudspeaker=bool(data.get("to_loudspeaker")),
        to_chats=bool(data.get("to_chats")),
        start=start,
        end=max(start, end),
        chat_post_time=post,
        end_time=airtime.parse_time(str(data.get("end_time") or "")),
        airtime=chosen if chosen in set(Airtime) else Airtime.ALL.value,
    )
    return reach_svc.of_plan(db(), plan, _now(), settings().tz)


def _form_context(**extra: Any) -> dict[str, Any]:
    from cms.web.speech import engine_status

    extra.setdefault("engine", engine_status(extra.get("ann")))
    if extra["engine"].engine == "neural":
        extra.setdefault("neural_speakers", speech_svc.neural_speakers(settings()))
    if not extra.get("campaign") and not (extra.get("ann") and extra["ann"].campaign):
        extra.setdefault("reach", _reach_of(extra.get("data") or {}, extra.get("ann")))
    extra.setdefault("platforms", PLATFORMS)
    extra.setdefault("campaign", False)
    extra.setdefault("may_draft_campaign", campaigns_svc.may_draft(g.user))
    return {
        "areas": svc.target_scope(g.user, extra.get("ann")).areas(db()),
        "topics": all_topics(db(), active_only=True),
        "voices": VOICES,
        "limits": {"title": svc.MAX_TITLE, "body": svc.MAX_BODY, "spoken": svc.MAX_SPOKEN},
        "listen_chars": speech_svc.LISTEN_CHARS,
        # The article's title on the publishing platform (within its plugin's limit), shown
        # as they type.
        "oa_title": _article_title(str((extra.get("data") or {}).get("title") or "")),
        **extra,
    }


def _article_title(title: str) -> dict[str, Any] | None:
    found = publishing_svc.article_title(db(), title)
    if found is None:
        return None
    return {"limit": found[0], "text": found[1], "noun": publisher_nouns(found[2])}


def _data_of(rev: Revision) -> dict[str, Any]:
    return announcement_form_values(svc.Content.of(rev))


@bp.app_template_global()
def title_for(rev: Revision, area: Area) -> str:
    """The notice's title as an outlet or chat of ``area`` reads it: "通知（三组）" when it is
    aimed at part of the area (the run sheet, the outlet's day, the dashboard), in the
    reader's punctuation ("通知 (三组)" on English pages)."""
    part = svc.narrower_targets(rev, area)
    if not part:
        return rev.title
    names = _("、").join(a.name for a in part)
    return _("{title}（{areas}）").format(title=rev.title, areas=names)


def _submit(ann: Announcement) -> None:
    """Submit for review, refused when the notice's channels reach nothing."""
    svc.submit(db(), g.user, ann)
    reach_svc.require_reach(db(), ann, _now(), settings().tz)


@bp.post("/reach")
@rule(*EDITORS)
@read_only
def reach() -> Any:
    """Where the draft goes, as typed: a fragment for the editor's script, else the editor."""
    from cms.web.speech import _announcement, _editor, _fetching

    ann = _announcement()
    if _fetching():
        return render_template(
            "announcements/_reach_fragment.html",
            reach=_reach_of(announcement_form_data(), ann),
            platforms=PLATFORMS,
        )
    return _editor(ann)


@bp.get("/")
@rule(*STAFF)
def index() -> Any:
    """List announcements with filters and pagination."""
    status = request.args.get("status") or None
    if status is not None and status not in svc.PHASES:
        status = None
    q = (request.args.get("q") or "").strip()[:100] or None
    stmt = svc.search(
        db(),
        today=today(settings()),
        status=status,
        topic_id=int_arg("topic"),
        area_id=int_arg("area"),
        q=q,
        scope=Scope.of(g.user),
    )
    page = paginate(stmt, int_arg("page", 1) or 1, PER_PAGE)
    now, tz = _now(), settings().tz
    return render_template(
        "announcements/index.html",
        page=page,
        statuses=reach_svc.status_lines(db(), page.items, now, tz),
        areas=Scope.of(g.user).areas(db()),
        topics=all_topics(db()),
        status=status,
        q=q or "",
        topic_id=int_arg("topic"),
        area_id=int_arg("area"),
        phases=svc.PHASES,
        labels=svc.STATUS_LABELS,
    )


def _refused(tx: transaction, data: Mapping[str, Any], status: int, **context: Any) -> Any:
    """The form again after a refused save: field errors beside their fields (400), any other
    refusal flashed (``status``)."""
    if not tx.fields:
        flash(tx.message, "error")
    return render_template(
        "announcements/form.html", **_form_context(data=data, errors=tx.fields, **context)
    ), (400 if tx.fields else status)


@bp.route("/new", methods=["GET", "POST"])
@rule(*EDITORS)
def create() -> Any:
    """Draft a new announcement."""
    day = today(settings())
    if request.method == "POST":
        data = announcement_form_data()
        campaign = request.form.get("campaign") == "1"
        with transaction(flash=False) as tx:
            ann = svc.create(db(), g.user, data, today=day, campaign=campaign)
            if request.form.get("action") == "submit":
                _submit(ann)
        if not tx.ok:
            return _refused(tx, data, 403, ann=None, campaign=campaign)
        flash(_("已保存") if ann.status.value == "draft" else _("已提交审核"), "success")
        return redirect(url_for(".show", announcement_id=ann.id))
    start, end = svc.default_window(day)
    data = {
        "to_loudspeaker": True,
        "to_chats": True,
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "repeats": 2,
        "chat_post_time": "09:00",
        "voice": tree.default_voice(db(), tree.area_of_user(db(), g.user)),
        "rate": 0,
        "priority": "normal",
        "area_ids": [],
    }
    campaign = campaigns_svc.may_draft(g.user) and request.args.get("campaign") == "1"
    return render_template(
        "announcements/form.html",
        **_form_context(data=data, errors={}, ann=None, campaign=campaign),
    )


@bp.route("/<int:announcement_id>/edit", methods=["GET", "POST"])
@rule(*EDITORS)
def edit(announcement_id: int) -> Any:
    """Edit an announcement: saves a new revision."""
    ann = announcement_or_404(announcement_id)
    if request.method == "POST":
        data = announcement_form_data()
        with transaction(flash=False) as tx:
            svc.update(db(), g.user, ann, data, today=today(settings()))
            if request.form.get("action") == "submit":
                _submit(ann)
        if not tx.ok:
            return _refused(tx, data, 409, ann=ann)
        flash(_("已保存为第 {n} 版").format(n=ann.current.number), "success")
        return redirect(url_for(".show", announcement_id=ann.id))
    if ann.status.value in {"in_review", "withdrawn"}:
        flash(_("当前状态下不能修改"), "error")
        return redirect(url_for(".show", announcement_id=ann.id))
    return render_template(
        "announcements/form.html", **_form_context(data=_data_of(ann.current), errors={}, ann=ann)
    )


@bp.get("/<int:announcement_id>")
@rule(*STAFF)
def show(announcement_id: int) -> Any:
    """One announcement: content, state, actions and history."""
    from cms.services import recordings

    ann = announcement_or_404(announcement_id)
    from sqlalchemy import select

    from cms.models import AuditLog

    history = list(
        db().scalars(
            select(AuditLog)
            .where(AuditLog.object_type == "announcement", AuditLog.object_id == ann.id)
            .order_by(AuditLog.at.desc(), AuditLog.id.desc())
        )
    )
    now, tz = _now(), settings().tz
    outcome = (
        reach_svc.outcome(db(), ann, now, tz)
        if ann.status is Status.APPROVED and not ann.campaign
        else None
    )
    # What the revision under review (or being drafted) would reach, for the reviewer too.
    preview = (
        reach_svc.of_plan(db(), reach_svc.Plan.of(ann.current), now, tz)
        if not ann.campaign
        and ann.status in (Status.DRAFT, Status.IN_REVIEW)
        and ann.current.id != ann.approved_revision_id
        else None
    )
    return render_template(
        "announcements/show.html",
        status=outcome.status if outcome else reach_svc.status_line(db(), ann, now, tz),
        outcome=outcome,
        reach=preview,
        platforms=PLATFORMS,
        ann=ann,
        rev=ann.current,
        history=history,
        recording=recordings.active(db(), ann),
        action_labels=ACTION_LABELS,
        voices=VOICES,
        phase=ann.phase(today(settings())),
        labels=svc.STATUS_LABELS,
        can_approve=svc.can_approve(db(), g.user, ann),
        priority_labels=svc.PRIORITY_LABELS,
        share_panel=share_panel(ann),
        adoption_labels=campaigns_svc.ADOPTION_LABELS,
        clips=speech_svc.clip_slots(db(), [ann.current]),
        scheduler_running=speech_svc.scheduler_running(db()),
        breakin_active=breakin.active_of(db(), ann.id, today(settings())),
    )


def _transition(announcement_id: int, action: str) -> Any:
    ann = announcement_or_404(announcement_id)
    comment = request.form.get("comment", "")
    with transaction() as tx:
        match action:
            case "submit":
                _submit(ann)
            case "approve":
                svc.approve(db(), g.user, ann, comment)
                if request.form.get("breakin") == "1":
                    # 立即插播: sent now, on approval (cms.services.breakin).
                    breakin.start(db(), g.user, ann, rule="approval", today=today(settings()))
            case "reject":
                svc.reject(db(), g.user, ann, comment)
            case "withdraw":
                svc.withdraw(db(), g.user, ann, comment)
    if not tx.ok:
        return redirect(url_for(".show", announcement_id=announcement_id))
    done = {
        "submit": _("已提交审核"),
        "approve": _("已审核通过"),
        "reject": _("已退回修改"),
        "withdraw": _("已撤回"),
    }
    flash(done[action], "success")
    if action == "approve" and request.form.get("breakin") == "1":
        flash(_("已开始立即插播：各广播点的插播音频正在生成"), "success")
        return redirect(url_for("breakins.index"))
    if action in {"approve", "reject"}:
        return redirect(url_for(".review_queue"))
    return redirect(url_for(".show", announcement_id=announcement_id))


def _transition_view(action: str) -> Callable[[int], Any]:
    return lambda announcement_id: _transition(announcement_id, action)


add_routes(
    bp,
    (
        Route(f"/<int:announcement_id>/{action}", action, roles, _transition_view(action), doc)
        for action, roles, doc in (
            ("submit", EDITORS, "Send a draft to review."),
            ("approve", REVIEWERS, "Approve the revision under review."),
            ("reject", REVIEWERS, "Send back to draft with a comment."),
            ("withdraw", STAFF, "Withdraw: stop everywhere from now on."),
        )
    ),
    method="POST",
)


@bp.post("/<int:announcement_id>/recording")
@rule(*EDITORS)
def recording(announcement_id: int) -> Any:
    """Upload a human recording (dialect or Yi-language), or go back to synthesis."""
    from audio.render import Renderer
    from cms.services import recordings

    ann = announcement_or_404(announcement_id)
    config = settings()
    with transaction() as tx:
        if request.form.get("action") == "remove":
            recordings.remove_recording(db(), g.user, ann)
            done = _("已改回合成语音")
        else:
            upload = request.files.get("recording")
            if upload is None or not upload.filename:
                flash(_("请选择要上传的录音文件"), "error")
                return redirect(url_for(".show", announcement_id=ann.id))
            renderer = Renderer(
                config.audio_dir / "cache",
                engine=config.tts_engine,
                edge_wss_url=config.edge_wss_url,
                neural_model_dir=config.neural_model_dir,
            )
            # Checking the audio (ffmpeg) and keeping the file take seconds: not while
            # holding the writer lock (the service checks the announcement again after).
            with lock_released():
                row = recordings.add_recording(
                    db(),
                    g.user,
                    ann,
                    filename=upload.filename,
                    data=upload.read(),
                    renderer=renderer,
                    directory=config.data_dir / "recordings",
                )
            done = _("录音已上传（{s} 秒），将代替合成语音").format(s=round(row.duration))
    if tx.ok:
        flash(done, "success")
    return redirect(url_for(".show", announcement_id=ann.id))


@bp.get("/review")
@rule(*REVIEWERS)
def review_queue() -> Any:
    """Announcements waiting for review, oldest first."""
    from sqlalchemy import select

    from cms.models import Status

    items = list(
        db().scalars(
            select(Announcement)
            .where(Announcement.status == Status.IN_REVIEW, Scope.of(g.user).announcements())
            .order_by(Announcement.updated_at)
        )
    )
    return render_template(
        "announcements/review.html",
        items=items,
        can_approve={a.id: svc.can_approve(db(), g.user, a) for a in items},
        reach={
            a.id: reach_svc.of_plan(db(), reach_svc.Plan.of(a.current), _now(), settings().tz)
            for a in items
            if not a.campaign
        },
        platforms=PLATFORMS,
        clips=speech_svc.clip_slots(db(), [a.current for a in items]),
        scheduler_running=speech_svc.scheduler_running(db()),
    )


@bp.get("/<int:announcement_id>/revisions")
@rule(*STAFF)
def revisions(announcement_id: int) -> Any:
    """Revision history with a diff between any two revisions."""
    ann = announcement_or_404(announcement_id)
    numbers = [r.number for r in ann.revisions]
    new_n = int_arg("new", numbers[-1]) or numbers[-1]
    old_n = int_arg("old", max(1, new_n - 1)) or 1
    try:
        new, old = svc.revision(db(), ann, new_n), svc.revision(db(), ann, old_n)
    except NotFound as exc:
        from flask import abort

        abort(404, description=message(exc))
    return render_template(
        "announcements/revisions.html", ann=ann, old=old, new=new, changes=svc.diff(old, new)
    )
