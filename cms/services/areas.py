"""The grid: a tree of areas (县 → 乡镇 → 村 → 组; an install may start at a township)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cms.models import Area, AreaKind, User
from cms.services import audit
from cms.services.errors import N_, Conflict, Errors, NotFound
from cms.services.scope import Scope
from cms.services.text import clean_text, parse_choice
from cms.tree import ancestor_ids

AREA_KIND_LABELS = {
    AreaKind.COUNTY: N_("县"),
    AreaKind.TOWNSHIP: N_("乡镇"),
    AreaKind.VILLAGE: N_("村"),
    AreaKind.GROUP: N_("组"),
}


def get_area(session: Session, area_id: int) -> Area:
    area = session.get(Area, area_id)
    if area is None:
        raise NotFound(N_("区域 {id} 不存在"), id=area_id)
    return area


def create_area(
    session: Session, actor: User | None, *, name: object, kind: object, parent_id: int | None
) -> Area:
    errors = Errors()
    clean = clean_text(errors, "name", name, label=N_("名称"), max_len=80)
    parsed_kind = parse_choice(errors, "kind", kind, AreaKind, AreaKind.GROUP, N_("区域类型无效"))
    parent = None
    scope = Scope.of(actor)
    if parent_id is not None:
        parent = session.get(Area, parent_id)
        if parent is None or not scope.contains(parent):
            errors.add("parent_id", N_("上级区域 {id} 不存在"), id=parent_id)
    elif not scope.whole:
        # Only the whole install adds top-level areas (a county, or another township).
        errors.add("parent_id", N_("请选择上级区域"))
    if "kind" not in errors and parsed_kind is AreaKind.COUNTY and parent_id is not None:
        # The county is the top of the tree: 县 → 乡镇 → 村 → 组.
        errors.add("kind", N_("县只能是最上级区域"))
    if (
        clean
        and "parent_id" not in errors
        and session.scalar(
            select(Area.id).where(
                Area.name == clean,
                Area.parent_id == parent_id if parent_id is not None else Area.parent_id.is_(None),
            )
        )
    ):
        errors.add("name", N_("同一上级下已有“{name}”"), name=clean)
    errors.raise_if_any()
    area = Area(name=clean, kind=parsed_kind, parent=parent)
    session.add(area)
    session.flush()
    area.path = (parent.path if parent else "/") + f"{area.id}/"
    audit.record(session, actor, "area.create", area, name=clean, parent=parent_id)
    return area


def rename_area(session: Session, actor: User, area: Area, name: object) -> Area:
    errors = Errors()
    clean = clean_text(errors, "name", name, label=N_("名称"), max_len=80)
    errors.raise_if_any()
    old, area.name = area.name, clean
    audit.record(session, actor, "area.rename", area, old=old, new=clean)
    return area


def delete_area(session: Session, actor: User, area: Area) -> None:
    if area.children or area.outlets:
        raise Conflict(N_("“{name}”下还有下级区域或广播点，不能删除"), name=area.name)
    from cms.models import Announcement, ChatGroup, revision_area

    used = session.scalar(select(revision_area.c.area_id).where(revision_area.c.area_id == area.id))
    owned = session.scalar(select(Announcement.id).where(Announcement.area_id == area.id))
    bound = session.scalar(select(ChatGroup.id).where(ChatGroup.area_id == area.id))
    if used or owned or bound:
        raise Conflict(N_("“{name}”已被公告或群聊使用，不能删除"), name=area.name)
    if session.scalar(select(User.id).where(User.area_id == area.id)):
        raise Conflict(N_("“{name}”还有所属用户，不能删除"), name=area.name)
    audit.record(session, actor, "area.delete", area, name=area.name)
    session.delete(area)


def full_name(session: Session, area: Area) -> str:
    names = {
        a.id: a.name for a in session.scalars(select(Area).where(Area.id.in_(ancestor_ids(area))))
    }
    return " / ".join(names[i] for i in ancestor_ids(area) if i in names)
