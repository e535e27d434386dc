"""A chat's credentials are one opaque mapping of its plugin's (``ChatGroup.credentials``), and
migration 0017 moves a robot's old ``webhook_url`` and ``secret`` columns into it under the
robots' names and back, on SQLite and on PostgreSQL (a private schema)."""

from __future__ import annotations

import json

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session

from cms.db import make_session_factory
from cms.migrate import alembic_config, current_revision, downgrade, head_revision, upgrade
from cms.models import Area, AuditLog, ChatGroup
from tests.pg import BACKENDS, settings_for

WECOM = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=0123456789abcdef"
DING = "https://oapi.dingtalk.com/robot/send?access_token=" + "ab" * 32
SECRET = "SEC" + "1" * 64


@pytest.fixture(params=BACKENDS)
def settings(request, settings):  # type: ignore[no-untyped-def]
    return settings_for(request, settings)


def _before() -> str:
    """The revision 0017 follows (re-chained at merge, so read from the script)."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision("0017")
    assert script is not None and isinstance(script.down_revision, str)
    return script.down_revision


def _columns(engine: Engine) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns("chat_group")}


def test_0017_moves_webhooks_and_secrets_into_the_credentials_and_back(  # type: ignore[no-untyped-def]
    settings, engine: Engine, session: Session, grid: dict[str, Area]
) -> None:
    rows = {
        "wecom": {"webhook": WECOM},
        "dingtalk": {"webhook": DING, "secret": SECRET},
        "telegram": {},
    }
    for platform, credentials in rows.items():
        session.add(
            ChatGroup(
                platform=platform, chat_id=f"{platform}-1", area=grid["v1"], credentials=credentials
            )
        )
    session.commit()
    ids = {c.platform: c.id for c in session.scalars(select(ChatGroup))}
    session.close()

    downgrade(engine, _before())
    assert current_revision(engine) == _before()
    assert {"webhook_url", "secret"} <= _columns(engine) and "credentials" not in _columns(engine)
    with engine.connect() as conn:
        old = {
            platform: tuple(
                conn.exec_driver_sql(
                    f"SELECT webhook_url, secret FROM chat_group WHERE id = {int(row_id)}"
                ).one()
            )
            for platform, row_id in ids.items()
        }
    assert old == {
        "wecom": (WECOM, None),
        "dingtalk": (DING, SECRET),
        "telegram": (None, None),
    }

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert "credentials" in _columns(engine) and not {"webhook_url", "secret"} & _columns(engine)
    with make_session_factory(engine, clock=settings.clock)() as fresh:
        moved = {c.platform: c.credentials for c in fresh.scalars(select(ChatGroup))}
    assert moved == rows


def test_a_new_chat_has_no_credentials_and_a_robot_keeps_only_what_its_plugin_made(  # type: ignore[no-untyped-def]
    session: Session, grid: dict[str, Area]
) -> None:
    from cms.services import chats

    telegram = chats.bind_chat(
        session, None, platform="telegram", chat_id="-100123", area=grid["v1"]
    )
    assert telegram.credentials == {}
    robot = chats.bind_robot(
        session,
        None,
        platform="dingtalk",
        area=grid["v1"],
        webhook=f" {DING}&timestamp=1&sign=x ",
        secret=SECRET,
    )
    session.commit()
    session.expire_all()
    assert robot.credentials == {"webhook": DING, "secret": SECRET}
    details = json.dumps([a.detail for a in session.scalars(select(AuditLog))], default=str)
    assert SECRET not in details and "ab" * 32 not in details
