"""County campaigns: drafted and reviewed by the county, broadcast by each township.

A county officer (an editor whose area is a county) drafts an announcement marked as a
campaign, aimed at townships (or villages below them); the county's reviewer approves it
through the ordinary workflow. An approved campaign never goes out by itself
(:func:`cms.services.announcements.live_filter` leaves campaigns out): it is *offered* to
every township it reaches, and goes out in a township only once the township

- **adopts** it as is: the township gets its own announcement (``adoption = 'adopted'``),
  approved at once with the county's approved content, aimed at the township's part of the
  campaign's targets. No second review (the county reviewed the text); audited. When the
  county approves a newer revision of the campaign, adopted copies follow it; or
- **adapts** it: the township gets its own draft (``adoption = 'adapted'``), a copy of the
  county's content that a township editor edits and the township's reviewer approves. From
  then on text, spoken text and timing are the township's.

Every copy keeps ``origin_id`` (the campaign). Withdrawing a campaign withdraws the copies
adopted as is (they carry the county's words); adapted copies are the township's and keep
going out, flagged on their pages as coming from a withdrawn campaign. Editing an adopted
copy turns it into an adapted one (a township revision, reviewed by the township).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from cms.clock import clock_of
from cms.models import (
    Announcement,
    Area,
    AreaKind,
    ChatGroup,
    Delivery,
    DeliveryState,
    DownloadEvent,
    JobState,
    Outlet,
    Program,
    Receipt,
    Revision,
    Status,
    User,
)
from cms.roles import EDITORS, STAFF
from cms.services import audit, share
from cms.services import content as content_model
from cms.services.errors import N_, NotFound, PermissionDenied, WorkflowError
from cms.services.scope import Scope
from cms.tree import all_areas, narrower, township_of, within

ADOPTED = "adopted"
ADAPTED = "adapted"
ADOPTION_LABELS = {ADOPTED: N_("照发"), ADAPTED: N_("改编")}


def may_draft(user: User) -> bool:
    """Whether ``user`` may draft county campaigns: an editor or admin of a county."""
    return user.role in EDITORS and user.area is not None and user.area.kind is AreaKind.COUNTY


def townships(session: Session, rev: Revision) -> list[Area]:
    """The townships a campaign revision reaches, in tree order."""
    found: list[Area] = []
    for town in session.scalars(
        select(Area).where(Area.kind == AreaKind.TOWNSHIP).order_by(Area.path)
    ):
        if targets_in(rev, town):
            found.append(town)
    return found


def targets_in(rev: Revision, town: Area) -> list[Area]:
    """The township's part of the campaign's targets: the township itself when a target
    contains it (the county, or the township), else the targets inside it."""
    if any(within(town, t) for t in rev.areas):
        return [town]
    return narrower(rev.areas, town)


def copy_of(session: Session, campaign: Announcement, town: Area) -> Announcement | None:
    """The township's copy of ``campaign``, if it adopted or adapted it."""
    return session.scalar(
        select(Announcement).where(
            Announcement.origin_id == campaign.id, Announcement.area_id == town.id
        )
    )


def copies(session: Session, campaign: Announcement) -> list[Announcement]:
    return list(
        session.scalars(
            select(Announcement)
            .where(Announcement.origin_id == campaign.id)
            .order_by(Announcement.area_id)
        )
    )


def _offered(campaign: Announcement | None) -> bool:
    return (
        campaign is not None
        and campaign.campaign
        # Like any announcement, the approved revision stays pinned (and offered) while a
        # newer one is in the county's review.
        and campaign.status is not Status.WITHDRAWN
        and campaign.approved_revision is not None
    )


def offered_to(session: Session, town: Area) -> list[Announcement]:
    """Approved county campaigns (not withdrawn) that reach ``town``, newest first."""
    found = session.scalars(
        select(Announcement)
        .where(
            Announcement.campaign,
            Announcement.status != Status.WITHDRAWN,
            Announcement.approved_revision_id.is_not(None),
        )
        .order_by(Announcement.id.desc())
        .options(selectinload(Announcement.approved_revision).selectinload(Revision.areas))
    )
    return [c for c in found if _offered(c) and targets_in(c.approved, town)]


def waiting_for(session: Session, town: Area) -> int:
    """How many campaigns offered to ``town`` it has not adopted or adapted yet."""
    offered = offered_to(session, town)
    if not offered:
        return 0
    taken = set(
        session.scalars(
            select(Announcement.origin_id).where(
                Announcement.area_id == town.id,
                Announcement.origin_id.in_([c.id for c in offered]),
            )
        )
    )
    return sum(1 for c in offered if c.id not in taken)


def user_township(user: User) -> Area | None:
    """The township a user works for (None for county and whole-install users)."""
    return township_of(user.area) if user.area is not None else None


def get_offered(session: Session, user: User, campaign_id: int) -> Announcement:
    """A campaign as seen by ``user``: the county's own (in scope), one offered to the
    user's township, or one the township copied; anything else is not found."""
    campaign = session.get(Announcement, campaign_id)
    if campaign is not None and campaign.campaign:
        if Scope.of(user).contains(campaign.area):
            return campaign
        town = user_township(user)
        if town is not None and (
            (_offered(campaign) and targets_in(campaign.approved, town))
            or copy_of(session, campaign, town) is not None
        ):
            return campaign
    raise NotFound(N_("县级活动 {id} 不存在"), id=campaign_id)


def _check(session: Session, user: User, campaign: Announcement, town: Area) -> None:
    # A neighbour's township, or a campaign that does not reach it, is not found.
    if not Scope.of(user).contains(town) or town.kind is not AreaKind.TOWNSHIP:
        raise NotFound(N_("区域 {id} 不存在"), id=town.id)
    if not campaign.campaign:
        raise NotFound(N_("县级活动 {id} 不存在"), id=campaign.id)
    if not _offered(campaign):
        raise WorkflowError(N_("县级活动尚未通过县里审核，或已撤回"))
    if not targets_in(campaign.approved, town):
        raise NotFound(N_("县级活动 {id} 不存在"), id=campaign.id)
    if copy_of(session, campaign, town) is not None:
        raise WorkflowError(N_("本乡镇已经采用或改编过这个县级活动"))


def _copy_revision(session: Session, ann: Announcement, source: Revision, town: Area) -> Revision:
    content = dataclasses.replace(
        content_model.Content.of(source), area_ids=tuple(a.id for a in targets_in(source, town))
    )
    number = (
        session.scalar(select(func.max(Revision.number)).where(Revision.announcement_id == ann.id))
        or 0
    ) + 1
    # The text is the county's: its revisions name the county's author.
    rev = Revision(
        announcement=ann,
        number=number,
        author_id=source.author_id,
        **content_model.revision_values(session, content),
    )
    session.add(rev)
    session.flush()
    ann.latest_revision = rev
    return rev


def _take_up(
    session: Session, user: User, campaign: Announcement, town: Area, adoption: str
) -> tuple[Announcement, Revision]:
    """The township's own announcement copying the campaign's approved revision, audited."""
    _check(session, user, campaign, town)
    source = campaign.approved
    ann = Announcement(
        status=Status.APPROVED if adoption == ADOPTED else Status.DRAFT,
        created_by_id=user.id,
        area_id=town.id,
        origin=campaign,
        adoption=adoption,
    )
    session.add(ann)
    session.flush()
    rev = _copy_revision(session, ann, source, town)
    audit.record(
        session,
        user,
        "campaign.adopt" if adoption == ADOPTED else "campaign.adapt",
        ann,
        campaign=campaign.id,
        campaign_revision=source.number,
        township=town.id,
    )
    return ann, rev


def adopt(session: Session, user: User, campaign: Announcement, town: Area) -> Announcement:
    """The township broadcasts the county's approved campaign as is (no second review)."""
    if user.role not in STAFF:
        raise PermissionDenied(N_("只有编辑、审核员或管理员可以采用县级活动"))
    ann, rev = _take_up(session, user, campaign, town, ADOPTED)
    ann.approved_revision = rev
    # Reviewed by the county: the copy names the county's review, not a township's.
    ann.reviewed_by_id, ann.reviewed_at = campaign.reviewed_by_id, campaign.reviewed_at
    share.ensure_token(ann)
    return ann


def adapt(session: Session, user: User, campaign: Announcement, town: Area) -> Announcement:
    """The township starts its own draft from the county's approved campaign."""
    if user.role not in EDITORS:
        raise PermissionDenied(N_("只有编辑或管理员可以改编县级活动"))
    return _take_up(session, user, campaign, town, ADAPTED)[0]


def follow(session: Session, user: User, campaign: Announcement) -> int:
    """After the county approves a new campaign revision: adopted copies take it over.

    Returns how many copies changed.
    """
    changed = 0
    source = campaign.approved
    for ann in copies(session, campaign):
        if ann.adoption != ADOPTED or ann.status is not Status.APPROVED or ann.area is None:
            continue
        if not targets_in(source, ann.area):
            # The new revision no longer reaches this township: its copy stops.
            _withdraw_copy(session, user, ann, campaign)
            changed += 1
            continue
        rev = _copy_revision(session, ann, source, ann.area)
        ann.approved_revision = rev
        ann.reviewed_by_id, ann.reviewed_at = campaign.reviewed_by_id, campaign.reviewed_at
        audit.record(
            session,
            user,
            "campaign.follow",
            ann,
            campaign=campaign.id,
            campaign_revision=source.number,
            revision=rev.number,
        )
        changed += 1
    return changed


def withdraw_copies(session: Session, user: User, campaign: Announcement) -> int:
    """After the county withdraws a campaign: copies adopted as is are withdrawn too.

    Adapted copies are the township's own and stay (their pages flag the withdrawn origin).
    Returns how many copies were withdrawn.
    """
    count = 0
    for ann in copies(session, campaign):
        if ann.adoption != ADOPTED or ann.status is Status.WITHDRAWN:
            continue
        _withdraw_copy(session, user, ann, campaign)
        count += 1
    return count


def _withdraw_copy(session: Session, user: User, ann: Announcement, campaign: Announcement) -> None:
    previous = ann.status
    ann.status = Status.WITHDRAWN
    ann.withdrawn_at = clock_of(session).now()
    audit.record(
        session,
        user,
        "campaign.withdraw_copy",
        ann,
        campaign=campaign.id,
        previous_status=previous.value,
    )


def edited(session: Session, user: User, ann: Announcement) -> None:
    """A township edits its adopted copy: from now on it is an adaptation of its own."""
    if ann.adoption == ADOPTED:
        ann.adoption = ADAPTED
        audit.record(session, user, "campaign.adapt", ann, campaign=ann.origin_id, edited=True)


# -- the county's report ---------------------------------------------------------------


@dataclass
class ReportRow:
    """What one area did with one campaign (the area and everything below it)."""

    campaign: Announcement
    area: Area
    adoption: str | None = None
    built: int = 0
    downloaded: int = 0
    confirmed: int = 0
    posted: int = 0
    # Programs a terminal (IP speaker, 4G column, PC player) fetched whole.
    boxes: int = 0


def county_campaigns(session: Session, scope: Scope) -> list[Announcement]:
    """The campaigns owned inside ``scope``, newest first."""
    return list(
        session.scalars(
            select(Announcement)
            .where(Announcement.campaign, scope.announcements())
            .order_by(Announcement.id.desc())
        )
    )


def report(
    session: Session, scope: Scope, campaigns: Iterable[Announcement] | None = None
) -> list[ReportRow]:
    """Per campaign, per township and village in ``scope``: programs built that contain the
    campaign (a township's copy of it), of those downloaded and confirmed, and chat posts sent.

    Programs are read once for all campaigns (their manifests name the copies they play).
    """
    camps = list(campaigns) if campaigns is not None else county_campaigns(session, scope)
    if not camps:
        return []
    areas = [
        a
        for a in all_areas(session)
        if scope.contains(a) and a.kind in (AreaKind.TOWNSHIP, AreaKind.VILLAGE)
    ]
    # Plain columns, not whole rows: a county's report reads hundreds of copies and outlets.
    all_copies = session.execute(
        select(
            Announcement.id, Announcement.origin_id, Announcement.area_id, Announcement.adoption
        ).where(Announcement.origin_id.in_([c.id for c in camps]))
    ).all()
    campaign_of: dict[int, int] = {
        copy_id: origin_id for copy_id, origin_id, _, _ in all_copies if origin_id is not None
    }
    adoption = {(origin_id, area_id): how for _, origin_id, area_id, how in all_copies}
    outlet_path: dict[int, str] = {
        outlet_id: path
        for outlet_id, path in session.execute(
            select(Outlet.id, Area.path)
            .join(Area, Area.id == Outlet.area_id)
            .where(scope.outlets())
        )
    }

    # program id → (outlet's area path, campaigns it contains)
    built: dict[int, tuple[str, set[int]]] = {}
    by_day: dict[tuple[int, date], list[int]] = {}
    if campaign_of:
        for pid, outlet_id, day, manifest in session.execute(
            select(Program.id, Program.outlet_id, Program.day, Program.manifest).where(
                Program.state == JobState.DONE, Program.manifest.is_not(None), scope.programs()
            )
        ):
            listed = (manifest or {}).get("announcements", [])
            found = {
                campaign_of[i["announcement_id"]]
                for i in listed
                if i.get("announcement_id") in campaign_of
            }
            if found:
                built[pid] = (outlet_path.get(outlet_id, ""), found)
                by_day.setdefault((outlet_id, day), []).append(pid)
    ids = list(built)
    confirmed: set[int] = set()
    downloaded: set[int] = set()
    if ids:
        confirmed = set(
            session.scalars(select(Receipt.program_id).where(Receipt.program_id.in_(ids)))
        )
        for pid, outlet_id, day in session.execute(
            select(DownloadEvent.program_id, DownloadEvent.outlet_id, DownloadEvent.day).where(
                DownloadEvent.outlet_id.in_({o for o, _ in by_day})
            )
        ):
            if pid in built:
                downloaded.add(pid)
            elif pid is None:
                # A whole day's download (ZIP, M3U, RSS): every program of that day.
                downloaded.update(by_day.get((outlet_id, day), []))
    boxed: set[int] = set()
    if ids:
        from cms.services.terminals import whole_programs

        boxed = whole_programs(session, ids)
    posted_at: dict[int, list[str]] = {}  # campaign id → the areas of its sent chat posts
    if campaign_of:
        for ann_id, path in session.execute(
            select(Revision.announcement_id, Area.path)
            .join(Delivery, Delivery.revision_id == Revision.id)
            .join(ChatGroup, ChatGroup.id == Delivery.chat_group_id)
            .join(Area, Area.id == ChatGroup.area_id)
            .where(
                Revision.announcement_id.in_(list(campaign_of)),
                Delivery.state == DeliveryState.SENT,
                scope.deliveries(),
            )
        ):
            posted_at.setdefault(campaign_of[ann_id], []).append(path)

    rows: list[ReportRow] = []
    for camp in camps:
        reached = (
            {t.id for t in townships(session, camp.approved)}
            if camp.approved_revision is not None
            else set()
        )
        mine = [(pid, path) for pid, (path, cs) in built.items() if camp.id in cs]
        for area in areas:
            town = township_of(area)
            if town is None or town.id not in reached:
                continue
            inside = {pid for pid, path in mine if path.startswith(area.path)}
            rows.append(
                ReportRow(
                    campaign=camp,
                    area=area,
                    adoption=adoption.get((camp.id, town.id)),
                    built=len(inside),
                    downloaded=len(downloaded & inside),
                    confirmed=len(confirmed & inside),
                    boxes=len(boxed & inside),
                    posted=sum(
                        1 for path in posted_at.get(camp.id, ()) if path.startswith(area.path)
                    ),
                )
            )
    return rows
