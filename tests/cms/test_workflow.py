"""The announcement workflow: every allowed and forbidden transition, revisions and pinning."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from cms.models import AuditLog, Revision, Role, Setting, Status
from cms.services import announcements as svc
from cms.services.errors import PermissionDenied, ValidationError, WorkflowError

ACTIONS = ["submit", "approve", "reject", "withdraw", "edit"]
# state → actions allowed from it (for a user whose role permits the action).
ALLOWED = {
    "draft": {"submit", "withdraw", "edit"},
    "in_review": {"approve", "reject", "withdraw"},
    "approved": {"withdraw", "edit"},
    "withdrawn": set(),
}


def _do(session, action, ann, editor, reviewer, content, today):  # type: ignore[no-untyped-def]
    match action:
        case "submit":
            svc.submit(session, editor, ann)
        case "approve":
            svc.approve(session, reviewer, ann)
        case "reject":
            svc.reject(session, reviewer, ann, "请补充时间地点")
        case "withdraw":
            svc.withdraw(session, reviewer, ann)
        case "edit":
            svc.update(session, editor, ann, content(title="改过的标题"), today=today)


@pytest.mark.parametrize("state", list(ALLOWED))
@pytest.mark.parametrize("action", ACTIONS)
def test_transition_table(session, make_announcement, make_user, content, state, action, today):
    editor = make_user(Role.EDITOR)
    reviewer = make_user(Role.REVIEWER)
    ann = make_announcement(state, author=editor)
    before = ann.status
    if action in ALLOWED[state]:
        _do(session, action, ann, editor, reviewer, content, today)
        session.commit()
        expected = {
            "submit": Status.IN_REVIEW,
            "approve": Status.APPROVED,
            "reject": Status.DRAFT,
            "withdraw": Status.WITHDRAWN,
            "edit": Status.DRAFT,
        }[action]
        assert ann.status is expected
    else:
        with pytest.raises(WorkflowError):
            _do(session, action, ann, editor, reviewer, content, today)
        session.rollback()
        assert session.get(type(ann), ann.id).status is before


@pytest.mark.any_hour
def test_approval_pins_revision_and_edit_needs_review_again(
    session, make_announcement, make_user, content, today
):
    editor = make_user(Role.EDITOR)
    reviewer = make_user(Role.REVIEWER)
    ann = make_announcement("approved", author=editor)
    first = ann.approved_revision
    assert first is not None and first.number == 1
    rev2 = svc.update(
        session, editor, ann, content(body="新的正文：时间改到周日上午。"), today=today
    )
    session.commit()
    assert rev2.number == 2 and ann.status is Status.DRAFT
    # The approved revision keeps going out until the new one is approved.
    assert ann.approved_revision_id == first.id
    assert ann in svc.going_out_on(session, today)
    svc.submit(session, editor, ann)
    svc.approve(session, reviewer, ann)
    session.commit()
    assert ann.approved_revision_id == rev2.id
    # The old revision is untouched.
    assert session.get(Revision, first.id).body.startswith("各位村民")


@pytest.mark.any_hour
def test_unchanged_edit_makes_no_revision(session, make_announcement, make_user, content, today):
    editor = make_user(Role.EDITOR)
    ann = make_announcement("draft", author=editor)
    rev = svc.update(session, editor, ann, content(), today=today)
    assert rev.number == 1
    assert session.scalar(select(func.count()).select_from(Revision)) == 1


def test_reject_keeps_comment_and_requires_one(session, make_announcement, make_user):
    reviewer = make_user(Role.REVIEWER)
    ann = make_announcement("in_review")
    with pytest.raises(ValidationError) as err:
        svc.reject(session, reviewer, ann, "   ")
    assert "comment" in err.value.errors
    svc.reject(session, reviewer, ann, "请写明集合地点")
    session.commit()
    assert ann.status is Status.DRAFT and ann.review_comment == "请写明集合地点"


def test_no_self_approval_unless_allowed(session, make_announcement, make_user):
    admin = make_user(Role.ADMIN)
    ann = make_announcement("in_review", author=admin)
    with pytest.raises(PermissionDenied):
        svc.approve(session, admin, ann)
    session.rollback()
    session.add(Setting(key=svc.SELF_APPROVAL_SETTING, value=True))
    session.commit()
    svc.approve(session, admin, ann)
    assert ann.status is Status.APPROVED


@pytest.mark.parametrize(
    ("role", "action"),
    [
        (Role.REVIEWER, "create"),
        (Role.OPERATOR, "create"),
        (Role.EDITOR, "approve"),
        (Role.OPERATOR, "approve"),
        (Role.EDITOR, "reject"),
        (Role.OPERATOR, "withdraw"),
        (Role.REVIEWER, "submit"),
    ],
)
def test_roles_enforced_in_services(
    session, make_announcement, make_user, content, today, role, action
):
    user = make_user(role)
    ann = make_announcement("in_review" if action in {"approve", "reject"} else "draft")
    with pytest.raises(PermissionDenied):
        match action:
            case "create":
                svc.create(session, user, content(), today=today)
            case "approve":
                svc.approve(session, user, ann)
            case "reject":
                svc.reject(session, user, ann, "不行")
            case "withdraw":
                svc.withdraw(session, user, ann)
            case "submit":
                svc.submit(session, user, ann)


def test_every_state_change_is_audited(session, make_announcement, make_user):
    ann = make_announcement("withdrawn")
    actions = list(
        session.scalars(
            select(AuditLog.action)
            .where(AuditLog.object_type == "announcement", AuditLog.object_id == ann.id)
            .order_by(AuditLog.id)
        )
    )
    assert actions == [
        "announcement.create",
        "announcement.submit",
        "announcement.approve",
        "announcement.withdraw",
    ]
    entries = session.scalars(
        select(AuditLog).where(AuditLog.object_type == "announcement", AuditLog.object_id == ann.id)
    )
    assert all(e.user_id for e in entries)


@pytest.mark.any_hour
def test_withdrawn_leaves_going_out(session, make_announcement, make_user, today):
    ann = make_announcement("approved")
    assert ann in svc.going_out_on(session, today)
    svc.withdraw(session, make_user(Role.REVIEWER), ann)
    session.commit()
    assert ann not in svc.going_out_on(session, today)


@pytest.mark.any_hour
def test_targets_include_descendants(session, make_announcement, grid, today):
    ann = make_announcement("approved", area_ids=[grid["town"].id])
    rev = ann.approved_revision
    assert svc.reaches(rev, grid["g1"]) and svc.reaches(rev, grid["v2"])
    village_only = make_announcement("approved", area_ids=[grid["v1"].id]).approved_revision
    assert svc.reaches(village_only, grid["g1"]) and not svc.reaches(village_only, grid["g2"])
    # The one overlap rule: an outlet or chat of the township (above the target) reaches it
    # too; a neighbouring village's does not.
    assert svc.reaches(village_only, grid["town"]) and not svc.reaches(village_only, grid["v2"])


@pytest.mark.any_hour
def test_phases_follow_the_campaign_window(session, make_announcement, today):
    ann = make_announcement(
        "approved",
        start_date=(today + timedelta(days=2)).isoformat(),
        end_date=(today + timedelta(days=4)).isoformat(),
    )
    assert ann.phase(today) == "scheduled"
    assert ann.phase(today + timedelta(days=3)) == "active"
    assert ann.phase(today + timedelta(days=5)) == "finished"


def test_diff_between_revisions(session, make_announcement, make_user, content, today):
    editor = make_user(Role.EDITOR)
    ann = make_announcement("draft", author=editor)
    svc.update(
        session, editor, ann, content(title="垃圾分类从我做起（更正）", repeats=3), today=today
    )
    changes = {c.name: c for c in svc.diff(ann.revisions[0], ann.revisions[1])}
    assert set(changes) == {"title", "repeats"}
    assert ("insert", "（更正）") in changes["title"].ops
