"""One way a view commits: ``transaction`` and ``commits`` (cms/web/db.py), and no view of
its own calling commit or rollback."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from flask import get_flashed_messages
from sqlalchemy import select
from werkzeug.exceptions import NotFound as NotFoundPage

from cms.models import Topic
from cms.services import topics
from cms.services.errors import N_, NotFound, WorkflowError
from cms.web.db import commits, db, transaction

WEB = Path(__file__).resolve().parents[2] / "cms" / "web"
ENGLISH = {"headers": {"Cookie": "dalaba_lang=en"}}


def _names(session) -> list[str]:  # type: ignore[no-untyped-def]
    session.expire_all()
    return list(session.scalars(select(Topic.name).order_by(Topic.name)))


def test_a_block_that_succeeds_is_committed(app, session):
    with app.test_request_context("/", method="POST"):
        with transaction() as tx:
            topics.save_topic(db(), None, None, name="防汛")
        assert tx.ok and tx.error is None and tx.message == "" and tx.fields == {}
        assert get_flashed_messages() == []
    assert _names(session) == ["防汛"]


def test_a_domain_error_rolls_back_and_says_why_in_the_readers_language(app, session):
    with app.test_request_context("/", method="POST", **ENGLISH):
        with transaction() as tx:
            topics.save_topic(db(), None, None, name="防汛")
            topics.save_topic(db(), None, None, name="防汛")  # the same name again
        assert not tx.ok
        assert tx.fields == {"name": "Topic “防汛” already exists"}
        assert tx.text == "Topic “防汛” already exists"
        assert get_flashed_messages(with_categories=True) == [("error", tx.text)]
    assert _names(session) == []  # the first topic went with the failed block


def test_a_page_that_shows_the_error_itself_flashes_nothing(app, session):
    with app.test_request_context("/", method="POST", **ENGLISH):
        with transaction(flash=False) as tx:
            topics.save_topic(db(), None, None, name="")
        assert tx.fields == {"name": "Please fill in Topic name"}
        assert get_flashed_messages() == []


def test_an_error_the_page_does_not_catch_goes_on_rolled_back(app, session):
    with app.test_request_context("/", method="POST"):
        with pytest.raises(WorkflowError), transaction(catch=NotFound) as tx:
            topics.save_topic(db(), None, None, name="防汛")
            raise WorkflowError(N_("插播已经结束"))
        assert tx.error is None
        assert get_flashed_messages() == []
    assert _names(session) == []


def test_a_missing_row_answers_404_with_its_message(app, session):
    with app.test_request_context("/", method="POST", **ENGLISH):
        with pytest.raises(NotFoundPage) as caught, transaction(missing=True):
            topics.save_topic(db(), None, None, name="防汛")
            raise NotFound(N_("插播 {id} 不存在"), id=7)
        assert caught.value.description == "Break-in 7 does not exist"
    assert _names(session) == []


def test_other_exceptions_pass_through_untouched(app, session):
    with app.test_request_context("/", method="POST"):
        with pytest.raises(ZeroDivisionError), transaction() as tx:
            1 / 0  # noqa: B018
        assert tx.error is None


def test_commits_wraps_a_whole_view(app, session):
    @commits
    def save(name: str) -> str:
        topics.save_topic(db(), None, None, name=name)
        return "saved"

    with app.test_request_context("/", method="POST"):
        assert save("防汛") == "saved"
    with app.test_request_context("/", method="POST"):
        with pytest.raises(Exception) as caught:
            save("防汛")  # the blueprint's error handler answers it (API: JSON 400)
        assert type(caught.value).__name__ == "ValidationError"
    assert _names(session) == ["防汛"]


# Where else commit and rollback may stand: the app's error handlers (a full disk, the API's
# JSON errors) and a race two officers lose at the database (a unique index, not a service).
ALLOWED = {
    "db.py": None,
    "__init__.py": {"_disk_full_error"},
    "api/errors.py": {"_rollback"},
    "campaigns.py": {"_take"},
}


def test_no_view_commits_or_rolls_back_by_hand():
    found = []
    for path in sorted(WEB.rglob("*.py")):
        name = path.relative_to(WEB).as_posix()
        allowed = ALLOWED.get(name, set())
        if allowed is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef) or func.name in allowed:
                continue
            for node in ast.walk(func):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in {"commit", "rollback"}
                ):
                    found.append(f"{name}:{node.lineno} {func.name}")
    assert found == []
