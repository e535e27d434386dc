"""Notice templates: the campaign's recurring messages, written once, filled in many times.

A template is a title and a text with named fields in braces (``{日期}``, ``{地点}`` …).
What a field takes follows from its name: a name ending in 日期 is a date, in 时间 a time
of day, in 电话 a telephone number, in 金额 an amount of money; any other name is one line
of text. Filling a template checks every field and gives the title and text of a new draft,
which then goes through the normal draft → review path.

Where templates come from:

- the shipped library (:data:`SHIPPED`), the same for every install;
- an office's own (:class:`~cms.models.NoticeTemplate`): the county publishes templates for
  all its townships, a township adds its own for itself. An officer sees the shipped ones,
  their own office's and those of the offices above it; they change only their office's.
  Every change is audited.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cms import tree
from cms.models import Announcement, NoticeTemplate, User
from cms.roles import EDITORS
from cms.services import airtime, announcements, audit, phones
from cms.services.content import MAX_BODY
from cms.services.errors import N_, Errors, NotFound, PermissionDenied, ValidationError
from cms.services.text import clean_text, parse_date

__all__ = [
    "SHIPPED",
    "Field",
    "FieldKind",
    "Template",
    "available",
    "draft_from",
    "fields_of",
    "fill",
    "get",
    "save",
]

# A field: a run of CJK characters, letters or digits between braces, at most 12.
FIELD = re.compile(r"\{([\u4e00-\u9fffA-Za-z0-9_]{1,12})\}")
ROW_KEY = re.compile(r"[1-9][0-9]{0,8}")
MAX_FIELDS = 20
MAX_VALUE = 100
MAX_AMOUNT = Decimal("10000000")
WEEKDAYS = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")


class FieldKind(enum.StrEnum):
    DATE = "date"
    TIME = "time"
    PHONE = "phone"
    AMOUNT = "amount"
    TEXT = "text"


@dataclass(frozen=True)
class Field:
    name: str
    kind: FieldKind


@dataclass(frozen=True)
class Template:
    """A template as an officer sees it: shipped (``key`` ``s-…``) or an office's (its id)."""

    key: str
    name: str
    title: str
    body: str
    office: str | None  # the keeping office's area name; None: shipped or the whole install
    shipped: bool
    editable: bool = False
    row_id: int | None = None

    @property
    def fields(self) -> list[Field]:
        return fields_of(self.title, self.body)


def kind_of(name: str) -> FieldKind:
    """What a field takes, by its name."""
    for suffix, kind in (
        ("日期", FieldKind.DATE),
        ("时间", FieldKind.TIME),
        ("电话", FieldKind.PHONE),
        ("金额", FieldKind.AMOUNT),
    ):
        if name.endswith(suffix):
            return kind
    return FieldKind.TEXT


def fields_of(title: str, body: str) -> list[Field]:
    """The fields of a template, in the order they first appear."""
    seen: dict[str, Field] = {}
    for match in FIELD.finditer(f"{title}\n{body}"):
        name = match.group(1)
        if name not in seen:
            seen[name] = Field(name, kind_of(name))
    return list(seen.values())


def _value(errors: Errors, f: Field, raw: object) -> str:
    """One field's value as the notice says it, or "" after adding the error."""
    key = f"field:{f.name}"
    text = str(raw if raw is not None else "").strip()
    if not text:
        errors.add(key, N_("请填写{label}"), label=f.name)
        return ""
    match f.kind:
        case FieldKind.DATE:
            day = parse_date(text)
            if day is None:
                errors.add(key, N_("{label}应为 YYYY-MM-DD 格式的日期"), label=f.name)
                return ""
            return say_date(day)
        case FieldKind.TIME:
            at = airtime.parse_time(text)
            if at is None:
                errors.add(key, N_("{label}应为 HH:MM 格式的时间"), label=f.name)
                return ""
            return say_time(at)
        case FieldKind.PHONE:
            if not phones.is_phone(text):
                errors.add(key, N_("{label}应为电话号码（手机或带区号的座机）"), label=f.name)
                return ""
            return text
        case FieldKind.AMOUNT:
            try:
                amount = Decimal(text.removesuffix("元"))
            except InvalidOperation:
                amount = Decimal(-1)
            if not amount.is_finite() or not 0 <= amount < MAX_AMOUNT or amount != round(amount, 2):
                errors.add(key, N_("{label}应为金额（元，最多两位小数）"), label=f.name)
                return ""
            return f"{amount.normalize():f}"
        case _:
            clean = clean_text(errors, key, text, label=f.name, max_len=MAX_VALUE)
            return clean or ""


def say_date(day: date) -> str:
    """A date as a notice says it: 12月20日（星期六）."""
    return f"{day.month}月{day.day}日（{WEEKDAYS[day.weekday()]}）"


def say_time(at: time) -> str:
    """A time of day as a notice says it: 8:00, 14:30."""
    return f"{at.hour}:{at.minute:02d}"


def fill(template: Template, values: Mapping[str, object]) -> tuple[str, str]:
    """The title and text with every field filled in.

    Raises:
        ValidationError: fields missing or not of their kind, each under ``field:<name>``.
    """
    errors = Errors()
    filled = {f.name: _value(errors, f, values.get(f.name)) for f in template.fields}
    errors.raise_if_any()

    def put(text: str) -> str:
        return FIELD.sub(lambda m: filled.get(m.group(1), m.group(0)), text)

    return put(template.title), put(template.body)


# -- where templates come from ----------------------------------------------------------------


def _shipped(key: str, name: str, title: str, *lines: str) -> Template:
    return Template(
        key=f"s-{key}", name=name, title=title, body="\n".join(lines), office=None, shipped=True
    )


SHIPPED: tuple[Template, ...] = (
    _shipped(
        "cleanup",
        N_("村庄清洁行动"),
        "关于开展村庄清洁行动的通知",
        "各位村民：",
        "为建设干净整洁的美丽家园，定于{日期}{时间}在{地点}集中开展村庄清洁行动，"
        "清理房前屋后的垃圾、杂物和沟渠淤泥。",
        "请每户至少派一人参加，自带扫帚、铁锹等工具。",
        "联系电话：{电话}。",
    ),
    _shipped(
        "waste-fee",
        N_("垃圾清运费收缴"),
        "关于收缴{年度}年度生活垃圾清运费的通知",
        "各位村民：",
        "按照镇里统一安排，{年度}年度生活垃圾清运费每户{金额}元，低保户、特困户免缴。",
        "请于{截止日期}前到{地点}缴纳，缴费时领取收据。",
        "咨询电话：{电话}。",
    ),
    _shipped(
        "five-duties",
        N_("门前五包提醒"),
        "门前五包，从我做起",
        "各位村民：",
        "请各户落实“门前五包”责任：包卫生、包绿化、包秩序、包设施、包安全。",
        "村“两委”将于{日期}对各户门前进行检查，检查结果在村务公开栏公示。",
        "有问题请联系：{电话}。",
    ),
    _shipped(
        "donation",
        N_("爱心捐赠倡议"),
        "爱心捐赠倡议书",
        "各位村民、在外乡贤：",
        "为{事由}，村里发起爱心捐赠倡议。一方有难，八方支援，捐款捐物不论多少，都是一份心意。",
        "捐赠时间：即日起至{截止日期}。",
        "捐赠地点：{地点}。",
        "联系电话：{电话}。",
        "所有捐赠款物将在村务公开栏公示，接受大家监督。",
    ),
    _shipped(
        "household-meeting",
        N_("户长会通知"),
        "关于召开户长会的通知",
        "各位户长：",
        "定于{日期}{时间}在{地点}召开户长会，主要内容：{会议内容}。",
        "请每户户长（或家中一名成年人）准时参加，不能参加的请提前向村小组长请假。",
        "联系电话：{电话}。",
    ),
    _shipped(
        "outage",
        N_("停水停电"),
        "停水停电通知",
        "各位村民：",
        "因{原因}，{日期}{开始时间}至{结束时间}，{范围}将{停水或停电}。",
        "请提前储好用水，关闭家中电器开关，注意安全。",
        "如有疑问请联系：{电话}。",
    ),
    _shipped(
        "forest-fire",
        N_("森林防火"),
        "森林防火，人人有责",
        "各位村民：",
        "当前已进入森林防火{时期}，自{日期}起全面禁止野外用火。",
        "严禁上山烧纸祭祀、烧荒烧地、野外吸烟和燃放烟花爆竹。",
        "发现火情请立即拨打 12119 或村委会电话 {电话}。",
    ),
    _shipped(
        "weather-warning",
        N_("寒潮/暴雨预警"),
        "{天气}预警：请做好防范",
        "各位村民：",
        "据县气象台预报，自{日期}起我镇将出现{天气}天气，{天气情况}。",
        "请大家{防范措施}。",
        "老人、小孩和独居人员请家人和邻居多关照。",
        "如遇险情请拨打村委会电话 {电话}。",
    ),
    _shipped(
        "medical-insurance",
        N_("医保缴费"),
        "{年度}年度城乡居民医保开始缴费",
        "各位村民：",
        "{年度}年度城乡居民基本医疗保险开始缴费，个人缴费标准为每人{金额}元。",
        "缴费截止日期：{截止日期}。",
        "可通过{缴费渠道}缴纳，或到{地点}办理。",
        "咨询电话：{电话}。",
    ),
)
_SHIPPED = {t.key: t for t in SHIPPED}


def _visible_area_ids(user: User) -> list[int] | None:
    """The offices whose templates ``user`` sees (None: every office)."""
    if user.area is None:
        return None
    return tree.ancestor_ids(user.area) or [user.area.id]


def _may_edit(user: User, row: NoticeTemplate) -> bool:
    return user.role in EDITORS and (user.area_id is None or row.area_id == user.area_id)


def _of(user: User, row: NoticeTemplate) -> Template:
    return Template(
        key=str(row.id),
        name=row.name,
        title=row.title,
        body=row.body,
        office=row.area.name if row.area else None,
        shipped=False,
        editable=_may_edit(user, row),
        row_id=row.id,
    )


def available(session: Session, user: User, *, include_disabled: bool = False) -> list[Template]:
    """The templates ``user`` may use: the shipped library, then the offices' (higher first)."""
    stmt = select(NoticeTemplate).order_by(NoticeTemplate.area_id, NoticeTemplate.name)
    ids = _visible_area_ids(user)
    if ids is not None:
        stmt = stmt.where(NoticeTemplate.area_id.is_(None) | NoticeTemplate.area_id.in_(ids))
    if not include_disabled:
        stmt = stmt.where(NoticeTemplate.active)
    rows = list(session.scalars(stmt))
    rows.sort(key=lambda r: (r.area.path.count("/") if r.area else 0, r.name))
    return [*SHIPPED, *(_of(user, r) for r in rows)]


def get(session: Session, user: User, key: str) -> Template:
    """One template ``user`` may use.

    Raises:
        NotFound: unknown, disabled, or kept by an office the user does not see.
    """
    if key in _SHIPPED:
        return _SHIPPED[key]
    # ASCII digits only: str.isdigit() takes "²", which int() refuses.
    row = session.get(NoticeTemplate, int(key)) if ROW_KEY.fullmatch(key) else None
    ids = _visible_area_ids(user)
    if (
        row is None
        or not row.active
        or (ids is not None and row.area_id is not None and row.area_id not in ids)
    ):
        raise NotFound(N_("模板不存在"))
    return _of(user, row)


def save(
    session: Session,
    user: User,
    row: NoticeTemplate | None,
    *,
    name: object,
    title: object,
    body: object,
    active: bool = True,
) -> NoticeTemplate:
    """Add a template to the user's office, or change (or disable) one of its own.

    Raises:
        PermissionDenied: not an editor, or another office's template.
        ValidationError: empty or too long, or a template with too many fields.
    """
    if user.role not in EDITORS or (row is not None and not _may_edit(user, row)):
        raise PermissionDenied(N_("只能修改本单位的公告模板"))
    errors = Errors()
    clean_name = clean_text(errors, "name", name, label=N_("模板名称"), max_len=80)
    clean_title = clean_text(errors, "title", title, label=N_("标题"), max_len=200)
    clean_body = clean_text(
        errors, "body", body, label=N_("正文"), max_len=MAX_BODY, multiline=True
    )
    if clean_title and clean_body and len(fields_of(clean_title, clean_body)) > MAX_FIELDS:
        errors.add("body", N_("一个模板最多 {n} 个填空"), n=MAX_FIELDS)
    errors.raise_if_any()
    created = row is None
    if row is None:
        row = NoticeTemplate(area_id=user.area_id, created_by_id=user.id)
        session.add(row)
    row.name, row.title, row.body, row.active = clean_name, clean_title, clean_body, active
    session.flush()
    if created:
        audit.record(session, user, "template.create", row, name=row.name, area_id=row.area_id)
    else:
        audit.record(
            session,
            user,
            "template.edit" if active else "template.disable",
            row,
            name=row.name,
            area_id=row.area_id,
        )
    return row


def draft_from(
    session: Session,
    user: User,
    template: Template,
    values: Mapping[str, object],
    content: Mapping[str, Any],
    *,
    today: date,
) -> Announcement:
    """A new draft from a filled template and the rest of its content (targets, dates …).

    Raises:
        ValidationError: every bad field, the template's (``field:<name>``) and the content's.
    """
    problems: dict[str, Any] = {}
    title = body = ""
    try:
        title, body = fill(template, values)
    except ValidationError as exc:
        problems.update(exc.errors)
    data = {**content, "title": title or template.title, "body": body or template.body}
    try:
        announcements.parse_content(
            session, data, today=today, scope=announcements.target_scope(user)
        )
    except ValidationError as exc:
        problems.update({k: v for k, v in exc.errors.items() if k not in ("title", "body")})
    if problems:
        raise ValidationError(problems)
    ann = announcements.create(session, user, data, today=today)
    audit.record(session, user, "announcement.from_template", ann, template=template.key)
    return ann
