"""The editor's duration budget: a draft's spoken length and the slots it would overrun."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import g, jsonify, request
from flask_babel import gettext as _

from cms.models import Area
from cms.roles import STAFF
from cms.services import airtime
from cms.services import announcements as ann_svc
from cms.services import budget as budget_svc
from cms.services.scope import Scope
from cms.services.text import (
    MAX_DATE,
    MAX_ID,
    MIN_DATE,
    in_date_range,
    parse_date,
    parse_id,
    parse_int,
)
from cms.web import today
from cms.web.auth import rule
from cms.web.db import db, read_only, settings
from cms.web.schedule import bp


@bp.route("/budget", methods=["GET", "POST"])
@rule(*STAFF)
@read_only
def budget() -> Any:
    """JSON: the draft's spoken length and any slot it would make overrun."""
    data = request.values
    errors: dict[str, str] = {}
    text = (data.get("spoken_text") or "").strip() or (data.get("body") or "").strip()
    if len(text) > ann_svc.MAX_BODY:
        errors["body"] = _("正文太长")

    def number(name: str, default: int, lo: int, hi: int) -> int:
        raw = data.get(name, "")
        value = parse_int(raw) if raw != "" else default
        if value is None:
            errors[name] = _("应为整数")
            return default
        if not lo <= value <= hi:
            errors[name] = _("超出范围")
        return value

    rate = number("rate", 0, *ann_svc.RATE_RANGE)
    repeats = number("repeats", 1, 1, ann_svc.MAX_REPEATS)
    exclude = number("announcement_id", 0, 0, MAX_ID) or None
    raw_areas = data.getlist("area_ids") or (data.get("area_ids", "").split(","))
    area_ids: list[int] = []
    for item in raw_areas:
        if item.strip():
            area_id = parse_id(item)
            if area_id is None:
                errors["area_ids"] = _("区域编号无效")
            else:
                area_ids.append(area_id)
    scope = Scope.of(g.user)
    if area_ids and not scope.whole:
        inside = set(db().scalars(scope.area_ids().where(Area.id.in_(area_ids))))
        if set(area_ids) - inside:
            errors["area_ids"] = _("区域编号无效")
    dates: dict[str, date] = {}
    for name in ("start_date", "end_date"):
        day = parse_date(data.get(name, "")) if data.get(name) else today(settings())
        if day is None:
            errors[name] = _("应为 YYYY-MM-DD 格式的日期")
        elif not in_date_range(day):
            errors[name] = _("应在 {lo} 到 {hi} 之间").format(
                lo=MIN_DATE.isoformat(), hi=MAX_DATE.isoformat()
            )
        else:
            dates[name] = day
    end_time = None
    raw_end = (data.get("end_time") or "").strip()
    if raw_end:
        end_time = airtime.parse_time(raw_end)
        if end_time is None:
            errors["end_time"] = _("最后一天的结束时间应为 HH:MM")
    airtime_choice = data.get("airtime") or "all"
    if airtime_choice not in airtime.AIRTIME_LABELS:
        errors["airtime"] = _("播出时段无效")
    if errors:
        return jsonify({"errors": errors}), 400
    result = budget_svc.budget(
        db(),
        text=text,
        rate=rate,
        repeats=repeats,
        area_ids=area_ids,
        start=dates["start_date"],
        end=max(dates["end_date"], dates["start_date"]),
        exclude_announcement=exclude,
        end_time=end_time,
        airtime_choice=airtime_choice,
    )
    body = result.to_dict()
    if result.over:
        worst = body["worst"]
        body["message"] = _(
            "超出时段长度：{outlet} {day} {slot} 的节目预计 {total:.0f} 秒，时段只有 {limit} 秒"
        ).format(
            outlet=worst["outlet"],  # type: ignore[index]
            day=worst["day"],  # type: ignore[index]
            slot=worst["slot"],  # type: ignore[index]
            total=worst["total_seconds"],  # type: ignore[index]
            limit=worst["limit_seconds"],  # type: ignore[index]
        )
    else:
        body["message"] = _("预计朗读 {s:.0f} 秒（含重复 {t:.0f} 秒），不超出各时段长度").format(
            s=result.estimate_seconds, t=result.with_repeats_seconds
        )
    return jsonify(body)
