"""cms.services.chats: one-time codes, binding, areas by name, what a chat may ask for."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cms.models import Area, BindingCode, Role, User
from cms.services import chats
from cms.services.errors import Conflict, NotFound


def test_a_code_is_stored_hashed_and_works_once(session: Session, grid: dict[str, Area]) -> None:
    code = chats.create_binding_code(session, None, grid["v1"])
    assert len(code) == chats.CODE_LENGTH and set(code) <= set(chats.CODE_ALPHABET)
    row = session.scalar(select(BindingCode))
    assert row is not None and code not in row.code_hash
    chat = chats.bind_with_code(
        session, f" {code[:4]}-{code[4:].lower()} ", platform="telegram", chat_id=-1
    )
    assert chat.area_id == grid["v1"].id and row.used_by == "telegram:-1"
    with pytest.raises(chats.InvalidCode):
        chats.bind_with_code(session, code, platform="telegram", chat_id=-2)


def test_codes_expire_and_keep_to_their_purpose(
    session: Session, grid: dict[str, Area], make_user: Callable[..., User]
) -> None:
    now = datetime.now(UTC)
    old = chats.create_binding_code(session, None, grid["v1"], now=now - timedelta(hours=25))
    with pytest.raises(chats.InvalidCode):
        chats.bind_with_code(session, old, platform="telegram", chat_id=-1, now=now)
    link = chats.create_link_code(session, None, make_user(Role.OPERATOR))
    with pytest.raises(chats.InvalidCode):
        chats.bind_with_code(session, link, platform="telegram", chat_id=-1)
    bind = chats.create_binding_code(session, None, grid["v1"])
    with pytest.raises(chats.InvalidCode):
        chats.link_account(session, bind, platform="telegram", external_id=5)


def test_link_account_moves_an_account_to_the_newest_user(
    session: Session, make_user: Callable[..., User]
) -> None:
    first, second = make_user(Role.OPERATOR), make_user(Role.OPERATOR)
    chats.link_account(
        session, chats.create_link_code(session, None, first), platform="telegram", external_id=9
    )
    assert chats.account_user(session, "telegram", 9) == first
    chats.link_account(
        session, chats.create_link_code(session, None, second), platform="telegram", external_id=9
    )
    assert chats.account_user(session, "telegram", "9") == second
    second.active = False
    assert chats.account_user(session, "telegram", 9) is None


def test_rebinding_reactivates_and_migration_follows(
    session: Session, grid: dict[str, Area]
) -> None:
    chat = chats.bind_chat(session, None, platform="telegram", chat_id=-5, area=grid["v1"])
    chats.deactivate_chat(session, chat, "Forbidden: bot was kicked")
    assert chats.bound_chat(session, "telegram", -5) is None
    again = chats.bind_chat(session, None, platform="telegram", chat_id="-5", area=grid["v2"])
    assert again.id == chat.id and again.active and again.deactivated_reason is None
    chats.follow_migration(session, "telegram", -5, -1005)
    assert chats.bound_chat(session, "telegram", -1005) is again
    # A target id that is already bound is left alone rather than merged.
    other = chats.bind_chat(session, None, platform="telegram", chat_id=-6, area=grid["v1"])
    chats.follow_migration(session, "telegram", -6, -1005)
    assert other.chat_id == "-6"


def test_find_area_by_id_path_or_unique_name(session: Session, grid: dict[str, Area]) -> None:
    assert chats.find_area(session, str(grid["g2"].id)) == grid["g2"]
    assert chats.find_area(session, "清水镇/柳林村/一组") == grid["g2"]
    assert chats.find_area(session, "柳林村 / 一组") == grid["g2"]
    assert chats.find_area(session, "石桥村") == grid["v1"]
    with pytest.raises(Conflict, match="完整路径"):
        chats.find_area(session, "一组")
    with pytest.raises(NotFound):
        chats.find_area(session, "桃源村")
    with pytest.raises(NotFound):
        chats.find_area(session, "9999")


def test_bind_chat_cli_checks_the_chat_id(session: Session, grid: dict[str, Area]) -> None:
    assert chats.bind_chat_cli(session, " -100123 ", "石桥村").chat_id == "-100123"
    assert chats.bind_chat_cli(session, "@village_news", "石桥村").chat_id == "@village_news"
    with pytest.raises(Conflict):
        chats.bind_chat_cli(session, "12ab", "石桥村")


def test_notices_reach_a_chat_whose_area_overlaps_their_targets(
    session: Session, grid: dict[str, Area], make_announcement: Callable[..., Any], today: Any
) -> None:
    group_chat = chats.bind_chat(session, None, platform="telegram", chat_id=-1, area=grid["g1"])
    village_chat = chats.bind_chat(session, None, platform="telegram", chat_id=-2, area=grid["v1"])
    make_announcement("approved", title="全镇", area_ids=[grid["town"].id])
    make_announcement("approved", title="一组", area_ids=[grid["g1"].id])
    make_announcement("approved", title="不发群", area_ids=[grid["v1"].id], to_chats=False)
    make_announcement("withdrawn", title="已撤回", area_ids=[grid["v1"].id])
    make_announcement("approved", title="柳林", area_ids=[grid["v2"].id])

    def titles(chat: Any) -> list[str]:
        return sorted(n.revision.title for n in chats.notices_for_chat(session, chat, today))

    assert titles(group_chat) == ["一组", "全镇"]
    # The one overlap rule: the village's chat gets its 一组's notice too (never 柳林's).
    assert titles(village_chat) == ["一组", "全镇"]
    latest = chats.latest_notice_for_chat(session, group_chat, today)
    assert latest is not None and latest.revision.title == "一组"
    # 柳林's 一组 chat: the latest notice reaching it is 柳林's own (its village's).
    other_group = chats.bind_chat(session, None, platform="telegram", chat_id=-3, area=grid["g2"])
    assert titles(other_group) == ["全镇", "柳林"]
    assert latest.voice_path is None
