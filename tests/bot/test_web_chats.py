"""The chats page in the CMS: list, one-time codes shown once, unbind, access rule."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from cms.models import Area, Role, User
from cms.services import chats
from tests.bot.conftest import fresh
from tests.conftest import login
from tests.helpers import shown


def test_admin_sees_chats_and_the_outbox_notice(
    client: FlaskClient, make_user: Callable[..., User], session: Session, grid: dict[str, Area]
) -> None:
    chats.bind_chat(
        session, None, platform="telegram", chat_id="-100900", area=grid["g1"], title="一组<群>"
    )
    gone = chats.bind_chat(session, None, platform="telegram", chat_id="-100901", area=grid["v2"])
    chats.deactivate_chat(session, gone, "Forbidden: bot was kicked from the group chat")
    session.commit()
    login(client, make_user(Role.ADMIN))
    page = client.get("/chats").get_data(as_text=True)
    assert 'data-testid="outbox-notice"' in page
    assert "清水镇 / 石桥村 / 一组" in page
    assert "一组&lt;群&gt;" in page
    assert "bot was kicked" in page


def test_binding_code_is_shown_once_and_binds(
    client: FlaskClient, make_user: Callable[..., User], session: Session, grid: dict[str, Area]
) -> None:
    login(client, make_user(Role.ADMIN))
    response = client.post("/chats/codes", data={"area_id": grid["v1"].id})
    assert response.status_code == 200
    code = re.search(r"/bind ([A-Z0-9]{8})", response.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    assert code not in client.get("/chats").get_data(as_text=True)
    fresh(session)
    chat = chats.bind_with_code(session, code, platform="telegram", chat_id=-100555)
    assert chat.area_id == grid["v1"].id
    session.commit()
    assert client.post("/chats/codes", data={"area_id": "x"}).status_code == 400


def test_link_code_and_unbind(
    client: FlaskClient, make_user: Callable[..., User], session: Session, grid: dict[str, Area]
) -> None:
    operator = make_user(Role.OPERATOR, display_name="李广播")
    login(client, make_user(Role.ADMIN))
    response = client.post("/chats/link-codes", data={"user_id": operator.id})
    text = response.get_data(as_text=True)
    assert "李广播" in text
    code = re.search(r"/link ([A-Z0-9]{8})", text).group(1)  # type: ignore[union-attr]
    fresh(session)
    assert chats.link_account(session, code, platform="telegram", external_id=77).id == operator.id
    row = chats.bind_chat(session, None, platform="telegram", chat_id="-100556", area=grid["v1"])
    session.commit()
    assert client.post(f"/chats/{row.id}/unbind").status_code == 302
    fresh(session)
    row = chats.get_chat(session, row.id)
    assert not row.active and shown(row.deactivated_reason) == "管理员在后台解除绑定"


def test_only_admins(client: FlaskClient, make_user: Callable[..., User]) -> None:
    login(client, make_user(Role.EDITOR))
    assert client.get("/chats").status_code == 403
    assert client.post("/chats/codes", data={"area_id": 1}).status_code == 403
