"""Who sees what: a user works inside their area, the area and everything below it.

A user's area is their office: a county's staff see and act on every township of the
county, a township's staff only their township's villages and groups. A user without an
area belongs to the whole install (a single township's staff, the IT admin). Everything a
page lists or opens goes through one :class:`Scope`; an object outside it is *not found*
(never "forbidden": a township learns nothing about its neighbours' ids).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from cms.models import (
    Alert,
    Announcement,
    Area,
    AuditLog,
    BreakIn,
    ChatGroup,
    Clip,
    Delivery,
    Outlet,
    Program,
    PublisherAccount,
    Revision,
    Terminal,
    User,
)
from cms.services.errors import N_, Errors, NotFound
from cms.tree import all_areas, common_area_id

NOWHERE = "//"
"""A path no area has (paths are "/1/4/")."""


@dataclass(frozen=True)
class Scope:
    """The subtree of areas a user may see and act on (``path`` None: the whole install)."""

    area_id: int | None = None
    path: str | None = None

    @classmethod
    def of(cls, user: User | None) -> Scope:
        if user is None or user.area_id is None:
            return cls()
        if user.area is None:
            # Fail closed: an area that cannot be read is not the whole install.
            return cls(user.area_id, NOWHERE)
        return cls(user.area_id, user.area.path)

    @property
    def whole(self) -> bool:
        return self.path is None

    # -- areas --------------------------------------------------------------------------

    def area_ids(self) -> Select[int]:
        """A subquery of the ids of the areas in scope."""
        stmt = select(Area.id)
        if self.path is not None:
            stmt = stmt.where(Area.path.startswith(self.path))
        return stmt

    def has_area(self, column: InstrumentedAttribute[Any]) -> ColumnElement[bool]:
        """SQL: the area id in ``column`` lies in scope (a NULL area only for the whole install)."""
        if self.path is None:
            return true()
        return column.in_(self.area_ids())

    def contains(self, area: Area | None) -> bool:
        """Whether ``area`` (None: the whole install) lies in scope."""
        if self.path is None:
            return True
        return area is not None and area.path.startswith(self.path)

    def areas(self, session: Session) -> list[Area]:
        """The areas in scope, in tree order."""
        return [a for a in all_areas(session) if self.contains(a)]

    def check_areas(self, session: Session, errors: Errors, field: str, ids: Iterable[int]) -> None:
        """Name in ``errors`` every id of ``ids`` that is not an area in scope."""
        wanted = set(ids)
        if not wanted or self.path is None:
            return
        inside = set(session.scalars(self.area_ids().where(Area.id.in_(wanted))))
        outside = sorted(wanted - inside)
        if outside and field not in errors:
            # Said like a missing area: a neighbour's area ids are not confirmed to exist.
            errors.add(field, N_("区域不存在：{ids}"), ids="、".join(map(str, outside[:10])))

    def get_area(self, session: Session, area_id: int) -> Area:
        area = session.get(Area, area_id)
        if area is None or not self.contains(area):
            raise NotFound(N_("区域 {id} 不存在"), id=area_id)
        return area

    # -- rows that belong to an area ----------------------------------------------------

    def announcements(self) -> ColumnElement[bool]:
        return self.has_area(Announcement.area_id)

    def outlets(self) -> ColumnElement[bool]:
        return self.has_area(Outlet.area_id)

    def chats(self) -> ColumnElement[bool]:
        return self.has_area(ChatGroup.area_id)

    def users(self) -> ColumnElement[bool]:
        return self.has_area(User.area_id)

    def programs(self) -> ColumnElement[bool]:
        if self.path is None:
            return true()
        return Program.outlet_id.in_(select(Outlet.id).where(self.outlets()))

    def deliveries(self) -> ColumnElement[bool]:
        if self.path is None:
            return true()
        return Delivery.chat_group_id.in_(select(ChatGroup.id).where(self.chats()))

    def clips(self) -> ColumnElement[bool]:
        if self.path is None:
            return true()
        return Clip.revision_id.in_(
            select(Revision.id)
            .join(Announcement, Announcement.id == Revision.announcement_id)
            .where(self.announcements())
        )

    def alerts(self) -> ColumnElement[bool]:
        """Alerts about rows in scope (alerts about the install itself: the whole install)."""
        if self.path is None:
            return true()
        by_type = {
            "program": select(Program.id).where(self.programs()),
            "outlet": select(Outlet.id).where(self.outlets()),
            "delivery": select(Delivery.id).where(self.deliveries()),
            "chat_group": select(ChatGroup.id).where(self.chats()),
            "announcement": select(Announcement.id).where(self.announcements()),
            "clip": select(Clip.id).where(self.clips()),
            "break_in": select(BreakIn.id).where(self.has_area(BreakIn.area_id)),
            "terminal": select(Terminal.id).where(
                Terminal.outlet_id.in_(select(Outlet.id).where(self.outlets()))
            ),
        }
        return or_(
            *(
                and_(Alert.object_type == kind, Alert.object_id.in_(ids))
                for kind, ids in by_type.items()
            )
        )

    def audit(self) -> ColumnElement[bool]:
        """Audit rows whose actor works in scope, or whose object lies in scope.

        An actor inside the scope can only have acted inside it; an actor above it (the
        county) may have acted on the scope's objects, which the office must see too. Rows
        of the whole install's users about install-wide things (settings, topics, the
        scheduler) stay with the whole install.
        """
        if self.path is None:
            return true()
        objects = {
            "announcement": select(Announcement.id).where(self.announcements()),
            "area": self.area_ids(),
            "outlet": select(Outlet.id).where(self.outlets()),
            "chatgroup": select(ChatGroup.id).where(self.chats()),
            "user": select(User.id).where(self.users()),
            "program": select(Program.id).where(self.programs()),
            "delivery": select(Delivery.id).where(self.deliveries()),
            "clip": select(Clip.id).where(self.clips()),
            "publisheraccount": select(PublisherAccount.id).where(
                self.has_area(PublisherAccount.area_id)
            ),
            "breakin": select(BreakIn.id).where(self.has_area(BreakIn.area_id)),
            "terminal": select(Terminal.id).where(
                Terminal.outlet_id.in_(select(Outlet.id).where(self.outlets()))
            ),
        }
        actor_inside = exists().where(User.id == AuditLog.user_id, self.users())
        return or_(
            actor_inside,
            *(
                and_(AuditLog.object_type == kind, AuditLog.object_id.in_(ids))
                for kind, ids in objects.items()
            ),
        )

    # -- single objects: outside the scope is not found -----------------------------------

    def announcement(self, ann: Announcement | None, announcement_id: int) -> Announcement:
        """``ann`` when it is owned inside the scope; else NotFound."""
        if ann is None or not self.contains(ann.area):
            raise NotFound(N_("公告 {id} 不存在"), id=announcement_id)
        return ann

    def has_outlet(self, outlet: Outlet | None) -> bool:
        return outlet is not None and self.contains(outlet.area)

    def has_user(self, user: User | None) -> bool:
        return user is not None and self.contains(user.area)

    def has_chat(self, chat: ChatGroup | None) -> bool:
        return chat is not None and self.contains(chat.area)


def owner_area(user: User, targets: Iterable[Area]) -> int | None:
    """The office a new announcement belongs to: its author's, else its targets' common one."""
    if user.area_id is not None:
        return user.area_id
    return common_area_id(targets)
