"""The same code on PostgreSQL: migrations, workflow and queries.

Runs when DALABA_TEST_POSTGRES_URL names a database it may write to (CI starts one), in a
private schema (see tests/pg.py); skips otherwise, except under CI, where a missing database
is a failure.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cms.db import make_engine, make_session_factory
from cms.migrate import current_revision, head_revision, upgrade
from cms.models import AreaKind, Base, Role, Status
from cms.services import announcements as svc
from cms.services import areas, users


@pytest.fixture
def pg_engine(postgres_schema):  # type: ignore[no-untyped-def]
    engine = make_engine(postgres_schema)
    yield engine
    engine.dispose()


def test_postgres_migrates_and_runs_the_workflow(pg_engine, settings):
    upgrade(pg_engine)
    assert current_revision(pg_engine) == head_revision()
    with pg_engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert diff == []
    today = settings.today()
    with make_session_factory(pg_engine, clock=settings.clock)() as session:
        town = areas.create_area(
            session, None, name="清水镇", kind=AreaKind.TOWNSHIP, parent_id=None
        )
        village = areas.create_area(
            session, None, name="石桥村", kind=AreaKind.VILLAGE, parent_id=town.id
        )
        group = areas.create_area(
            session, None, name="一组", kind=AreaKind.GROUP, parent_id=village.id
        )
        editor = users.create_user(
            session,
            None,
            username="wangli",
            display_name="王丽",
            role="editor",
            password="long-enough-1",
        )
        reviewer = users.create_user(
            session,
            None,
            username="li",
            display_name="李",
            role="reviewer",
            password="long-enough-1",
        )
        data = {
            "title": "垃圾分类",
            "body": "各位村民：请按时分类投放。",
            "area_ids": [village.id],
            "to_loudspeaker": True,
            "to_chats": False,
            "start_date": today.isoformat(),
            "end_date": (today + timedelta(days=3)).isoformat(),
            "repeats": 2,
        }
        ann = svc.create(session, editor, data, today=today)
        svc.submit(session, editor, ann)
        svc.approve(session, reviewer, ann)
        session.commit()
        assert ann.status is Status.APPROVED
        assert [a.id for a in svc.going_out_on(session, today)] == [ann.id]
        for status in ("active", "approved", "draft", "finished"):
            list(
                session.scalars(
                    svc.search(session, today=today, status=status, area_id=group.id, q="分类")
                )
            )
        found = list(
            session.scalars(
                svc.search(session, today=today, status="active", area_id=group.id, q="分类")
            )
        )
        assert found == [ann]
        svc.update(session, editor, ann, {**data, "title": "垃圾分类（更正）"}, today=today)
        session.commit()
        assert ann.current.number == 2 and ann.approved_revision.number == 1
        assert (
            users.authenticate(session, "WANGLI", "long-enough-1", "127.0.0.1").role is Role.EDITOR
        )
