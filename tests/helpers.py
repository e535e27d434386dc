"""Small helpers shared by test packages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from cms.models import Area, AreaKind, Role, User
from cms.services.errors import Message


def shown(stored: str | None) -> str:
    """A stored message (alert, failure or deactivation reason) as a Chinese reader sees it."""
    return Message.loads(stored or "").render()


@dataclass
class County:
    """云县 with three townships (a village each), and an editor and a reviewer per office."""

    top: Area
    towns: dict[str, Area]
    villages: dict[str, Area]
    users: dict[tuple[str, Role], User]

    def __getitem__(self, key: str) -> Any:  # the dict-style access some tests use
        return getattr(self, key)


def make_county(session: Session, make_user: Callable[..., User]) -> County:
    from cms.services import areas

    top = areas.create_area(session, None, name="云县", kind=AreaKind.COUNTY, parent_id=None)
    towns, villages = {}, {}
    for key, name in (("a", "后箐乡"), ("b", "幸福镇"), ("c", "茂兰镇")):
        towns[key] = areas.create_area(
            session, None, name=name, kind=AreaKind.TOWNSHIP, parent_id=top.id
        )
        villages[key] = areas.create_area(
            session, None, name=f"{name[:2]}村", kind=AreaKind.VILLAGE, parent_id=towns[key].id
        )
    session.commit()
    users = {
        (where, role): make_user(role, area=area)
        for where, area in (("county", top), *towns.items())
        for role in (Role.EDITOR, Role.REVIEWER)
    }
    return County(top, towns, villages, users)
