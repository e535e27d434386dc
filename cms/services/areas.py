"""The grid: a tree of areas (县 → 乡镇 → 村 → 组; an install may start at a township)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cms.models import Area, AreaKind, User
from cms.services import audit
from cms.services.errors import N_, Conflict, Errors, NotFound
from cms.services.scope import Scope
from cms.services.text import clean_text

AREA_KIND_LABELS = {
    AreaKind.COUNTY: N_("县"),
    AreaKind.TOWNSHIP: N_("乡镇"),
    AreaKind.VILLAGE: N_("村"),
    AreaKind.GROUP: N_("组"),
}


def all_areas(session: Session) -> list[Area]:
    """Every area in tree order (parents before children, siblings by sort then id)."""
    areas = list(session.scalars(select(Area)))
    by_parent: dict[int | None, list[Area]] = {}
    for area in areas:
        by_parent.setdefault(area.parent_id, []).append(area)
    ordered: list[Area] = []

    def walk(parent: int | None) -> None:
        for child in sorted(by_parent.get(parent, []), key=lambda a: (a.sort, a.id)):
            ordered.append(child)
            walk(child.id)

    walk(None)
    return ordered


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
    try:
        parsed_kind = AreaKind(str(kind))
    except ValueError:
        errors.add("kind", N_("区域类型无效"))
        parsed_kind = AreaKind.GROUP
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


def descendant_ids(session: Session, areas: Iterable[Area]) -> set[int]:
    """Ids of the given areas and everything below them."""
    paths = [a.path for a in areas]
    if not paths:
        return set()
    return set(
        session.scalars(select(Area.id).where(or_(*(Area.path.startswith(p) for p in paths))))
    )


def ancestor_ids(area: Area) -> list[int]:
    """Ids from the root down to ``area`` itself."""
    return [int(p) for p in area.path.strip("/").split("/") if p]


def overlap(a: Area, b: Area) -> bool:
    """The one reach rule: two areas overlap when one is an ancestor of, or equal to, the other.

    A village loudspeaker plays notices for any of its 组; a 组's mobile speaker plays
    notices for its village and township; a chat bound to an area follows the same rule.
    """
    return a.path.startswith(b.path) or b.path.startswith(a.path)


def narrower(targets: Iterable[Area], area: Area) -> list[Area]:
    """The targets inside ``area`` when none covers all of it (what part of it they are for)."""
    targets = list(targets)
    if any(area.path.startswith(t.path) for t in targets):
        return []
    return [t for t in targets if t.path.startswith(area.path)]


def overlaps(area: Area):  # type: ignore[no-untyped-def]
    """SQL condition on :class:`Area`: the row overlaps ``area`` (:func:`overlap`)."""
    return or_(Area.id.in_(ancestor_ids(area) or [area.id]), Area.path.startswith(area.path))


def overlapping_ids(area: Area):  # type: ignore[no-untyped-def]
    """SQL: ids of the areas that overlap ``area`` (:func:`overlap`, as a subquery)."""
    return select(Area.id).where(overlaps(area))


def full_name(session: Session, area: Area) -> str:
    names = {
        a.id: a.name for a in session.scalars(select(Area).where(Area.id.in_(ancestor_ids(area))))
    }
    return " / ".join(names[i] for i in ancestor_ids(area) if i in names)
