"""A realistic demo township for `dalaba demo`: grid, outlets, users and a dozen announcements."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cms.models import AreaKind, ChatGroup, OutletKind, Role, User
from cms.services import announcements, areas, outlets, topics, users
from cms.settings import Settings

DEMO_PASSWORD = "dalaba-demo"

VILLAGES = {
    "石桥村": ["一组", "二组", "三组"],
    "柳林村": ["一组", "二组"],
    "河口村": ["上寨组", "下寨组", "新村组"],
    "新华村": ["一组", "二组"],
}

ACCOUNTS = [
    ("admin", "张建国", Role.ADMIN),
    ("wangli", "王丽（宣传委员）", Role.EDITOR),
    ("chenhui", "陈辉（宣传干事）", Role.EDITOR),
    ("lishuji", "李书记（审核）", Role.REVIEWER),
    ("shiqiao", "石桥村广播员 赵大姐", Role.OPERATOR),
    ("liulin", "柳林村广播员 刘师傅", Role.OPERATOR),
]

# Each village's outlets: (name after the village, kind, slots).
VILLAGE_OUTLETS = (
    ("村委会大喇叭", OutletKind.LOUDSPEAKER, "07:30 10, 12:00 10, 19:30 15"),
    ("流动宣传音箱", OutletKind.MOBILE, "09:00 30"),
)

# (title, body, spoken or None, topic, days from today to start, length in days, villages or None
#  for the whole township, final state, urgent)
ANNOUNCEMENTS: list[tuple[str, str, str | None, str, int, int, list[str] | None, str, bool]] = [
    (
        "绿美乡村：垃圾分类从我做起",
        "各位村民：为建设绿美乡村，从本月起全镇推行垃圾分类。厨余垃圾请倒入绿色桶，"
        "可回收物放入蓝色桶，有害垃圾（废电池、过期药品）交到村委会回收点。"
        "请大家互相提醒，共同守护干净整洁的家园。",
        None,
        "绿美知识",
        -3,
        30,
        None,
        "approved",
        False,
    ),
    (
        "门前五包责任落实到户",
        "各户请落实“门前五包”：包卫生、包绿化、包秩序、包设施、包安全。"
        "村“两委”将于每周五下午开展检查，检查结果在村务公开栏公示。",
        "各户请落实门前五包：包卫生、包绿化、包秩序、包设施、包安全。"
        "村两委将在每周五下午检查，结果在村务公开栏公示。",
        "通知",
        -1,
        14,
        ["石桥村", "柳林村"],
        "approved",
        False,
    ),
    (
        "2026年度生活垃圾清运费收缴通知",
        "按镇里统一安排，2026年度生活垃圾清运费每户每年60元，低保户、特困户免缴。"
        "请于12月20日前到村委会或通过村小组长缴纳，缴费时领取收据。咨询电话：0871-6512 3456。",
        None,
        "政策",
        0,
        21,
        None,
        "approved",
        False,
    ),
    (
        "寒潮来袭，注意防寒防冻",
        "据县气象台预报，12月1日至3日有强寒潮，最低气温-5℃。请检查水管保温，"
        "不要在密闭房间用炭火取暖，防止一氧化碳中毒；照顾好家中老人和小孩。",
        None,
        "通知",
        0,
        4,
        None,
        "approved",
        True,
    ),
    (
        "主题党日：清理河道 守护绿水",
        "本月主题党日活动定于周六上午8:30在河口村文化广场集合，全体党员参加，"
        "清理河道垃圾和岸边杂草。请自带手套、扫帚，村里统一准备垃圾袋。",
        None,
        "通知",
        1,
        5,
        ["河口村"],
        "approved",
        False,
    ),
    (
        "“最美庭院”评选结果公示",
        "经各组推荐、镇评审组实地查看，柳林村一组刘秀英家等10户获评“最美庭院”。"
        "公示期5天，如有异议请向镇宣传办反映。",
        None,
        "典型",
        2,
        7,
        None,
        "approved",
        False,
    ),
    (
        "爱心捐书活动倡议",
        "新华村小学图书角正在募集儿童读物，欢迎大家捐出家中闲置的课外书，"
        "送到村委会即可。一本书，一份爱心。",
        None,
        "通知",
        0,
        10,
        ["新华村"],
        "in_review",
        False,
    ),
    (
        "秸秆禁烧，守护蓝天",
        "秋收以后，严禁露天焚烧秸秆。秸秆可以还田、做饲料，村里有粉碎机可以预约。"
        "发现焚烧行为请拨打镇环保所电话 0871-6512 7788。",
        None,
        "政策",
        0,
        20,
        None,
        "in_review",
        False,
    ),
    (
        "改厕补助申请开始了",
        "今年农村户厕改造每户补助1,500元，需要改造的农户请带户口本到村委会登记，名额有限。",
        None,
        "政策",
        3,
        15,
        ["石桥村", "河口村"],
        "draft",
        False,
    ),
    (
        "村庄清洁日安排",
        "每月最后一个周六为村庄清洁日，请每户至少派一人参加。",
        None,
        "通知",
        5,
        30,
        None,
        "draft",
        False,
    ),
    (
        "防溺水安全提示",
        "河塘水深，请家长看管好孩子，不要私自下河游泳。",
        None,
        "通知",
        -20,
        10,
        None,
        "finished",
        False,
    ),
    (
        "旧版：垃圾清运时间调整",
        "垃圾清运车改为每周二、周五上午到村。",
        None,
        "通知",
        0,
        7,
        ["柳林村"],
        "withdrawn",
        False,
    ),
]


def seed(
    session: Session,
    settings: Settings,
    *,
    today: date | None = None,
    now: datetime | None = None,
) -> list[tuple[str, str, str]]:
    """Fill an empty database with the demo township; returns the accounts created (none if seeded).

    ``now`` (aware) is when the demo is installed: its outlets exist from then on, so slots
    that ended earlier that day are not applicable (and never missed).
    """
    if session.scalar(select(User.id).limit(1)) is not None:
        return []
    today = today or (now or settings.now()).astimezone(settings.tz).date()
    town = areas.create_area(session, None, name="清水镇", kind=AreaKind.TOWNSHIP, parent_id=None)
    village_ids: dict[str, int] = {}
    for village, groups in VILLAGES.items():
        v = areas.create_area(session, None, name=village, kind=AreaKind.VILLAGE, parent_id=town.id)
        village_ids[village] = v.id
        for group in groups:
            areas.create_area(session, None, name=group, kind=AreaKind.GROUP, parent_id=v.id)

    created: dict[str, User] = {}
    for username, name, role in ACCOUNTS:
        created[username] = users.create_user(
            session,
            None,
            username=username,
            display_name=name,
            role=role.value,
            password=DEMO_PASSWORD,
            # The township's office; the admin looks after the whole install.
            area_id=None if role is Role.ADMIN else town.id,
        )

    admin = created["admin"]
    for village, vid in village_ids.items():
        speaker, mobile = (
            outlets.save_outlet(
                session,
                admin,
                None,
                name=f"{village}{suffix}",
                kind=kind.value,
                area_id=vid,
                slots=slots,
                loop_minutes=30,  # what the mobile speaker loops (the default for both)
            )
            for suffix, kind, slots in VILLAGE_OUTLETS
        )
        if now is not None:
            speaker.created_at = mobile.created_at = now
        operator = {"石桥村": "shiqiao", "柳林村": "liulin"}.get(village)
        if operator:
            speaker.operators = [created[operator]]

    # Group chats: without a bot token their posts land in the local outbox (播出安排 → 发件箱).
    for i, village in enumerate(("石桥村", "柳林村", "河口村")):
        session.add(
            ChatGroup(
                platform="telegram",
                chat_id=str(-1001000000001 - i),
                title=f"{village}村民群",
                area_id=village_ids[village],
            )
        )

    topic_ids = {
        name: topics.save_topic(session, admin, None, name=name).id
        for name in ("绿美知识", "政策", "通知", "典型")
    }
    editors = [created["wangli"], created["chenhui"]]
    reviewer = created["lishuji"]
    for i, (title, body, spoken, topic, offset, length, villages, state, urgent) in enumerate(
        ANNOUNCEMENTS
    ):
        author = editors[i % 2]
        start = today + timedelta(days=offset)
        data: dict[str, Any] = {
            "title": title,
            "body": body,
            "spoken_text": spoken or "",
            "topic_id": topic_ids[topic],
            "priority": "urgent" if urgent else "normal",
            "area_ids": [village_ids[v] for v in villages] if villages else [town.id],
            "to_loudspeaker": True,
            "to_chats": True,
            "start_date": start.isoformat(),
            "end_date": (start + timedelta(days=length - 1)).isoformat(),
            "repeats": 3 if urgent else 2,
            "chat_post_time": "08:00" if urgent else "09:30",
            "voice": "zh-CN-YunjianNeural" if i % 3 == 2 else "zh-CN-XiaoxiaoNeural",
            "rate": 0,
        }
        # A finished campaign lies in the past: create it as it was on its first day.
        ann = announcements.create(
            session, author, data, today=start if state == "finished" else today
        )
        if state in {"in_review", "approved", "finished", "withdrawn"}:
            announcements.submit(session, author, ann)
        if state in {"approved", "finished", "withdrawn"}:
            announcements.approve(session, reviewer, ann, "内容准确，同意发布。")
        if state == "withdrawn":
            announcements.withdraw(session, reviewer, ann, "清运时间另行通知")
    return [(u, DEMO_PASSWORD, r.value) for u, _, r in ACCOUNTS]
