"""The audit log reads as words in both languages: every action code and detail key has a
label, and the filter finds entries by what people read."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po
from sqlalchemy.orm import Session

from cms.models import AuditLog, Role
from cms.services import audit
from tests.conftest import login

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "cms" / "translations" / "en" / "LC_MESSAGES" / "messages.po"


def _recorded() -> tuple[set[str], set[str]]:
    """Every action code passed to ``audit.record`` in the code, and every detail key."""
    actions: set[str] = set()
    keys: set[str] = set()
    for package in ("cms", "bot", "robots", "wechat"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or len(node.args) < 3:
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name != "record":
                    continue
                code = node.args[2]
                branches = [code.body, code.orelse] if isinstance(code, ast.IfExp) else [code]
                for branch in branches:
                    assert isinstance(branch, ast.Constant), f"{path}: {ast.unparse(code)}"
                    actions.add(branch.value)
                keys |= {kw.arg for kw in node.keywords if kw.arg}
            # Details passed as **changes / **extra: the keys those dicts are given.
            for node in ast.walk(tree):
                if (
                    "services" in path.parts
                    and isinstance(node, ast.Subscript)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in {"changes", "extra"}
                    and isinstance(node.slice, ast.Constant)
                ):
                    keys.add(node.slice.value)
                if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id in {"changes", "extra"} for t in node.targets
                ):
                    for inner in ast.walk(node.value):
                        if isinstance(inner, ast.Dict):
                            keys |= {k.value for k in inner.keys if isinstance(k, ast.Constant)}
    return actions, keys


def test_every_action_and_detail_key_has_a_label_in_both_languages() -> None:
    actions, keys = _recorded()
    assert len(actions) > 30 and {"program.confirm", "chat.test", "outlet.update"} <= actions
    assert actions - set(audit.ACTION_LABELS) == set()
    assert keys - set(audit.DETAIL_LABELS) == set()
    assert {"campaign", "role", "password", "tokens_revoked"} <= set(audit.DETAIL_LABELS)
    with PO.open("rb") as f:
        catalog = read_po(f, locale="en")
    labels = [
        *audit.ACTION_LABELS.values(),
        *audit.DETAIL_LABELS.values(),
        *audit.OBJECT_LABELS.values(),
        audit.YES,
        audit.NO,
        audit.OK,
        audit.NOT_OK,
    ]
    untranslated = [m for m in labels if not (catalog.get(m) and catalog.get(m).string)]
    assert untranslated == []


def _entries(session: Session, admin: Any) -> None:
    audit.record(session, admin, "announcement.approve", None, revision=2, comment="同意")
    audit.record(session, admin, "chat.test", None, ok=False)
    audit.record(session, admin, "program.confirm", None, via="web", late=True)
    audit.record(session, admin, "area.create", None, name="三组", parent=13)
    session.commit()


def _rows(response: Any) -> str:
    """The log's table (the filter's suggestions list every label)."""
    html = response.get_data(as_text=True)
    return html[html.index("<table") :]


def test_the_audit_page_shows_labels_and_filters_by_them(
    app: Any, session: Session, make_user: Any
) -> None:
    admin = make_user(Role.ADMIN)
    _entries(session, admin)
    client = app.test_client()
    login(client, admin)
    html = _rows(client.get("/admin/audit"))
    assert "确认节目已播放" in html and "发送测试消息" in html and "审核通过" in html
    assert "结果</span>：失败" in html and "迟报</span>：是" in html
    assert "上级区域</span>：13" in html
    assert "ok: False" not in html and "area: 13" not in html
    # By the label people read …
    found = _rows(client.get("/admin/audit", query_string={"action": "测试消息"}))
    assert "发送测试消息" in found and "确认节目已播放" not in found
    found = _rows(client.get("/admin/audit", query_string={"action": "审核"}))
    assert "审核通过" in found and "新建区域" not in found
    # … or by the code, as before.
    found = _rows(client.get("/admin/audit", query_string={"action": "program."}))
    assert "确认节目已播放" in found and "发送测试消息" not in found
    # In English, labels and filter are English.
    client.post("/lang", data={"lang": "en", "next": "/admin/audit"})
    english = client.get("/admin/audit", query_string={"action": "test message"})
    text = _rows(english)
    catalog = read_po(PO.open("rb"), locale="en")
    label = catalog.get(audit.ACTION_LABELS["chat.test"]).string
    assert label and label in text
    assert catalog.get(audit.ACTION_LABELS["program.confirm"]).string not in text
    assert session.query(AuditLog).count() >= 4
