"""The audit log reads as words in both languages: every action code and detail key has a
label, and the filter finds entries by what people read."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po
from sqlalchemy.orm import Session

from cms.models import AuditLog, Base, BreakIn, ChatGroup, NoticeTemplate, Role
from cms.services import audit
from tests.cms.test_i18n import VisibleText
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
                # audit.record(...) or a bare record(...) imported from cms.services.audit (a
                # job kind's own .record step is not an audit entry).
                if isinstance(func, ast.Attribute):
                    owner = func.value
                    if func.attr != "record" or not (
                        isinstance(owner, ast.Name) and owner.id == "audit"
                    ):
                        continue
                elif getattr(func, "id", "") != "record":
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


def test_every_kind_of_object_has_a_singular_label_with_its_id() -> None:
    kinds = {m.class_.__name__.lower() for m in Base.registry.mappers}
    assert kinds - set(audit.OBJECT_LABELS) == set()
    assert all("%(id)s" in label for kind, label in audit.OBJECT_LABELS.items() if kind)


def _visible(response: Any) -> str:
    """What a reader sees of the log's table: its text and the attributes browsers show."""
    parser = VisibleText()
    parser.feed(_rows(response))
    return " ".join(parser.parts).replace(" ：", "：")


def test_the_audit_page_shows_words_never_codes(
    app: Any, session: Session, make_user: Any, grid: dict[str, Any]
) -> None:
    admin = make_user(Role.ADMIN)
    office = NoticeTemplate(area_id=None, name="秋收防火通知", title="防火", body="请注意防火")
    chat = ChatGroup(platform="telegram", chat_id="-100", title="村民群", area_id=grid["v1"].id)
    session.add_all([office, chat])
    session.flush()
    breakin = BreakIn(id=7)  # only its kind and id are recorded
    audit.record(session, admin, "user.login", admin, remote_addr="127.0.0.1")
    audit.record(session, admin, "breakin.start", breakin, rule="approval")
    audit.record(session, admin, "breakin.end", breakin, rule="emergency")
    audit.record(session, admin, "announcement.from_template", None, template="s-cleanup")
    audit.record(session, admin, "announcement.from_template", None, template=str(office.id))
    audit.record(session, admin, "program.confirm", None, via="web", late=False)
    audit.record(session, admin, "chat.link", admin, platform="telegram", external_id="42")
    audit.record(session, admin, "chat.bind", chat, platform="wecom")
    audit.record(session, admin, "user.update", admin, role=["editor", "reviewer"])
    session.commit()
    client = app.test_client()
    login(client, admin)
    codes = [
        "user.login", "breakin.start", "announcement.from_template", "program.confirm",
        "breakin", "chatgroup", "approval", "emergency", "s-cleanup", "telegram", "wecom",
        "web", "editor", "reviewer", "remote_addr", "external_id",
    ]  # fmt: skip
    zh = _visible(client.get("/admin/audit"))
    for code in codes:
        assert code not in zh, code
    assert f"用户 #{admin.id}" in zh and "插播 #7" in zh and f"群聊 #{chat.id}" in zh
    assert "插播依据：审核通过时插播" in zh and "插播依据：管理员紧急插播" in zh
    assert "模板：村庄清洁行动" in zh and "模板：秋收防火通知" in zh
    assert "途径：网页" in zh and "平台：Telegram" in zh and "平台：企业微信" in zh
    assert "角色：宣传委员（编辑） → 审核员" in zh
    # The codes stay in the page for those who look for them, out of sight.
    assert 'data-action="breakin.start"' in _rows(client.get("/admin/audit"))
    client.post("/lang", data={"lang": "en", "next": "/admin/audit"})
    en = _visible(client.get("/admin/audit"))
    # (English words may contain a code's letters: "on approval"; dotted and joined codes not.)
    for code in [c for c in codes if "." in c or "_" in c or c in {"breakin", "chatgroup"}]:
        assert code not in en, code
    assert "telegram" not in en and "wecom" not in en and "Users" not in en
    assert f"User #{admin.id}" in en and "Break-in #7" in en and "Telegram" in en
    assert "WeCom" in en
