"""The audit log: who did what, when."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from cms.models import AuditLog, User
from cms.services.errors import N_

# How actions read to people, in an announcement's history and on the audit page (the raw
# action stays in the audit log; the page keeps it in a title attribute only).
ACTION_LABELS = {
    "announcement.create": N_("新建"),
    "announcement.edit": N_("修改（新版本）"),
    "announcement.submit": N_("提交审核"),
    "announcement.approve": N_("审核通过"),
    "announcement.reject": N_("退回修改"),
    "announcement.withdraw": N_("撤回"),
    "announcement.share_token": N_("更换分享链接（旧链接失效）"),
    "recording.add": N_("上传录音"),
    "recording.remove": N_("改回合成语音"),
    # Scheduler actions taken by people (cms.services.schedule).
    "clip.retry": N_("重试生成音频"),
    "program.retry": N_("重试生成节目"),
    "delivery.retry": N_("重试群聊发送"),
    "alert.resolve": N_("标记提醒已处理"),
    "lexicon.save": N_("保存读音（相关音频重新生成）"),
    "lexicon.delete": N_("删除读音（相关音频重新生成）"),
    # "{noun}": the installed publishers' nouns (cms.publishers.noun).
    "publishing.save": N_("保存{noun}设置"),
    "publishing.publish": N_("发布到{noun}"),
    "publishing.retry": N_("重试{noun}文章"),
    # Login throttling (cms.services.users.authenticate).
    "login.throttle": N_("登录失败过多，开始限速"),
    "user.lock": N_("账号因多处登录失败被临时锁定"),
    "user.unlock": N_("解除账号登录锁定"),
    # County campaigns (cms.services.campaigns).
    "campaign.adopt": N_("照发县级活动"),
    "campaign.adapt": N_("改编县级活动"),
    "campaign.follow": N_("随县级活动更新"),
    "campaign.withdraw_copy": N_("随县级活动撤回"),
    "voice.install": N_("安装离线神经语音模型"),
    # Administration: the grid, outlets, users, tokens, topics, settings.
    "area.create": N_("新建区域"),
    "area.rename": N_("重命名区域"),
    "area.delete": N_("删除区域"),
    "outlet.create": N_("新建广播点"),
    "outlet.update": N_("修改广播点"),
    "outlet_token.issue": N_("生成广播点下载链接"),
    "outlet_token.revoke": N_("作废广播点下载链接"),
    "program.confirm": N_("确认节目已播放"),
    "user.create": N_("新建用户"),
    "user.update": N_("修改用户"),
    "user.outlets": N_("指派广播点"),
    "user.login": N_("登录"),
    "user.logout": N_("退出登录"),
    "api_token.issue": N_("生成接口令牌"),
    "api_token.revoke": N_("作废接口令牌"),
    "topic.save": N_("保存主题"),
    "setting.update": N_("修改设置"),
    # Group chats and robots (cms.services.chats).
    "chat.code": N_("生成群聊绑定码"),
    "chat.bind": N_("绑定群聊"),
    "chat.unbind": N_("解除群聊绑定"),
    "chat.migrate": N_("群聊编号变更（升级为超级群）"),
    "chat.test": N_("发送测试消息"),
    "chat.link_code": N_("生成广播员关联码"),
    "chat.link": N_("关联广播员的聊天账号"),
    # Notice templates (cms.services.templates).
    "template.create": N_("新建公告模板"),
    "template.edit": N_("修改公告模板"),
    "template.disable": N_("停用公告模板"),
    "announcement.from_template": N_("从模板新建"),
    "staff_channel.save": N_("设置工作群提醒"),
    "staff_channel.remove": N_("取消工作群提醒"),
    # Break-ins (cms.services.breakin).
    "breakin.start": N_("立即插播"),
    "breakin.end": N_("结束插播"),
    "breakin.played": N_("插播已播放"),
    "announcement.emergency_approve": N_("按紧急规则通过（立即插播）"),
    # Terminals (cms.services.terminals).
    "terminal.register": N_("登记终端"),
    "terminal.revoke": N_("停用终端"),
    # Printed notices (cms.services.notices), counted in the ledger.
    "notice.print": N_("打印公告"),
}

# How the details of an entry read to people (the raw key stays in the log).
DETAIL_LABELS = {
    "copies": N_("份数"),
    "size": N_("纸张"),
    "addresses": N_("不同地址数"),
    "chat_group_id": N_("群聊"),
    "events": N_("提醒内容"),
    "failures": N_("失败次数"),
    "rule": N_("插播依据"),
    "sha256": N_("SHA-256 校验值"),
    "template": N_("模板"),
    "tts_engine": N_("语音引擎"),
    "until": N_("锁定到"),
    "voice": N_("声音"),
    "was_locked": N_("原先已锁定"),
    "about": N_("关于"),
    "active": N_("启用"),
    "announcement": N_("公告"),
    "area": N_("区域"),
    "area_id": N_("区域"),
    "campaign": N_("县级活动"),
    "campaign_revision": N_("县级活动版本"),
    "chat": N_("群聊"),
    "chat_id": N_("群聊编号"),
    "checked": N_("已在群里确认"),
    "comment": N_("意见"),
    "count": N_("数量"),
    "day": N_("日期"),
    "duration": N_("时长（秒）"),
    "edited": N_("已改编"),
    "error": N_("原来的错误"),
    "external_id": N_("聊天账号"),
    "key": N_("设置项"),
    "kind": N_("类型"),
    "late": N_("迟报"),
    "message": N_("内容"),
    "name": N_("名称"),
    "new": N_("新"),
    "new_prefix": N_("新链接开头"),
    "ok": N_("结果"),
    "old": N_("原"),
    "old_prefix": N_("旧链接开头"),
    "outlet": N_("广播点"),
    "outlets": N_("广播点"),
    "parent": N_("上级区域"),
    "password": N_("密码"),
    "platform": N_("平台"),
    "prefix": N_("链接开头"),
    "previous": N_("原状态"),
    "previous_status": N_("原状态"),
    "profile": N_("音频用途"),
    "reason": N_("原因"),
    "recording": N_("录音"),
    "remote_addr": N_("来源地址"),
    "revision": N_("版本"),
    "revisions": N_("受影响的版本"),
    "role": N_("角色"),
    "secret_changed": N_("更换了密钥"),
    "slot": N_("时段"),
    "slots": N_("时段"),
    "spoken": N_("读作"),
    "title": N_("标题"),
    "tokens_revoked": N_("作废的令牌"),
    "township": N_("乡镇"),
    "user": N_("用户"),
    "username": N_("用户名"),
    "value": N_("值"),
    "values": N_("值"),
    "via": N_("途径"),
    "was": N_("原状态"),
    "written": N_("写作"),
}

# What an entry is about: the model's class name (lower case) → the object, singular, with its
# id (``%(id)s``) — "公告 #20" / "Announcement #20".
OBJECT_LABELS = {
    "alert": N_("提醒 #%(id)s"),
    "announcement": N_("公告 #%(id)s"),
    "apitoken": N_("接口令牌 #%(id)s"),
    "area": N_("区域 #%(id)s"),
    "breakin": N_("插播 #%(id)s"),
    "breakinoutlet": N_("插播到广播点 #%(id)s"),
    "chataccount": N_("聊天账号 #%(id)s"),
    "chatgroup": N_("群聊 #%(id)s"),
    "clip": N_("音频 #%(id)s"),
    "delivery": N_("群聊发送 #%(id)s"),
    "lexiconentry": N_("读音 #%(id)s"),
    "noticetemplate": N_("公告模板 #%(id)s"),
    "outlet": N_("广播点 #%(id)s"),
    "outlettoken": N_("下载链接 #%(id)s"),
    "program": N_("节目 #%(id)s"),
    "recording": N_("录音 #%(id)s"),
    "revision": N_("公告版本 #%(id)s"),
    "setting": N_("设置 #%(id)s"),
    "slot": N_("时段 #%(id)s"),
    "staffchannel": N_("工作群提醒 #%(id)s"),
    "terminal": N_("终端 #%(id)s"),
    "topic": N_("主题 #%(id)s"),
    "user": N_("用户 #%(id)s"),
    "publisheraccount": N_("{noun} #%(id)s"),
    "publisherarticle": N_("{noun}文章 #%(id)s"),
    "auditlog": N_("审计记录 #%(id)s"),
    "bindingcode": N_("绑定码 #%(id)s"),
    "downloadevent": N_("下载记录 #%(id)s"),
    "loginfailure": N_("登录失败记录 #%(id)s"),
    "outboxmessage": N_("发件箱消息 #%(id)s"),
    "receipt": N_("播放确认 #%(id)s"),
    "schedulerlease": N_("调度锁 #%(id)s"),
    "sharedownload": N_("分享页播放记录 #%(id)s"),
    "staffpost": N_("工作群提醒消息 #%(id)s"),
    "terminalfetch": N_("终端下载记录 #%(id)s"),
    "": N_("系统"),
}

# How a confirmation came in (the ``via`` detail).
VIA_LABELS = {"web": N_("网页"), "bot": N_("聊天机器人"), "link": N_("广播点下载链接")}

YES, NO = N_("是"), N_("否")
OK, NOT_OK = N_("成功"), N_("失败")


def detail_value(
    key: str,
    value: Any,
    translate: Callable[[str], str],
    sep: str = "、",
    words: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """How a detail's value reads, in the reader's language: yes/no, success/failure, and the
    enum-like values in ``words`` (key → raw value → msgid, or → a name already in words);
    a list's items are joined with ``sep`` (the reader's), an ``[old, new]`` change reads
    ``old → new``."""
    if isinstance(value, bool):
        if key == "ok":
            return translate(OK if value else NOT_OK)
        return translate(YES if value else NO)
    if value is None:
        return "—"
    if isinstance(value, list):
        items = [detail_value(key, v, translate, sep, words) for v in value]
        if len(value) == 2 and key in {"role", "active", "area"}:
            return f"{items[0]} → {items[1]}"
        return sep.join(items)
    known = (words or {}).get(key, {})
    if str(value) in known:
        return translate(known[str(value)])
    return str(value)


def actions_matching(text: str, translate: Callable[[str], str]) -> list[str]:
    """Action codes whose label (in the reader's language) or code contains ``text``."""
    needle = text.strip().lower()
    if not needle:
        return []
    return [
        code
        for code, label in ACTION_LABELS.items()
        if needle in translate(label).lower() or needle in label.lower() or needle in code
    ]


def record(
    session: Session,
    actor: User | None,
    action: str,
    obj: object | None = None,
    **detail: Any,
) -> AuditLog:
    """Append one entry; ``obj`` is any mapped object with an ``id``."""
    entry = AuditLog(
        user_id=actor.id if actor else None,
        action=action,
        object_type=type(obj).__name__.lower() if obj is not None else "",
        object_id=getattr(obj, "id", None),
        detail=detail,
    )
    session.add(entry)
    return entry
