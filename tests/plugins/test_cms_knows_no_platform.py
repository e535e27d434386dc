"""cms knows no chat platform's credentials: what a chat plugin keeps to reach a chat (a
group robot's ``webhook`` address and signing ``secret``) is an opaque mapping that cms
stores and hands back (``ChatGroup.credentials``, ``Notice``), so no key of it, and none of
the columns it replaced, is named anywhere in cms's code. (The made-up platform's ``token``
goes the same way, shown end to end in test_made_up_platform; "token" is too common a word
to look for.)

Checked on the syntax tree of every module under ``cms/`` (the migrations excepted: one of
them moves the old columns into the mapping under the robots' names): no string constant,
attribute, keyword argument or parameter is one of the names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import cms.channels
from robots.address import FIELDS

CMS = Path(cms.channels.__file__).parent
# The columns the credentials replaced (migration 0017).
OLD = {"webhook_url", "secret"}


def names() -> set[str]:
    """Every credential key the robots declare, and the old columns."""
    fields = {f.name for f in FIELDS}
    assert fields == {"webhook", "secret"}
    return fields | OLD


def uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, name) of every string constant, attribute, keyword and parameter in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value
        elif isinstance(node, ast.Attribute):
            # ``field.secret`` is the port's own flag (cms.channels.FormField: kept, never shown
            # again), which publisher accounts read too; it is the only attribute of that name
            # in cms (mypy refuses a read of the removed column), so reads of it are not keys.
            if node.attr != "secret":
                yield node.lineno, node.attr
        elif isinstance(node, ast.keyword) and node.arg is not None:
            yield node.value.lineno, node.arg
        elif isinstance(node, ast.arg):
            yield node.lineno, node.arg


def named(root: Path, keys: set[str]) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.relative_to(root).parts:
            continue
        for line, name in uses(ast.parse(path.read_text(encoding="utf-8"))):
            if name in keys:
                found.append(f"{path.relative_to(root.parent)}:{line}: {name!r}")
    return found


def test_cms_names_no_credential_key_of_a_chat_platform() -> None:
    assert named(CMS, names()) == []


@pytest.mark.parametrize(
    "source",
    [
        'values = {"webhook": url}',
        "url = chat.webhook_url",
        "Notice(1, 'x', 't', 'b', secret=s)",
        "def bind(webhook: str) -> None: ...",
    ],
)
def test_the_check_finds_a_key_named_in_cms(tmp_path: Path, source: str) -> None:
    (tmp_path / "cms").mkdir()
    (tmp_path / "cms" / "bad.py").write_text(source + "\n", encoding="utf-8")
    assert named(tmp_path / "cms", names()) == [f"cms/bad.py:1: {n!r}" for n in found(source)]


def found(source: str) -> list[str]:
    return [name for _line, name in uses(ast.parse(source)) if name in names()]
