"""The audit log: who did what, when."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from cms.models import AuditLog, User
from cms.services.errors import N_

# How actions read to people, in an announcement's history and on the audit page (the raw
# action stays in the audit log and is shown beside the label).
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
    "wechat.save": N_("保存公众号设置"),
    "wechat.publish": N_("发布到公众号"),
    "wechat.retry": N_("重试公众号文章"),
    # County campaigns (cms.services.campaigns).
    "campaign.adopt": N_("照发县级活动"),
    "campaign.adapt": N_("改编县级活动"),
    "campaign.follow": N_("随县级活动更新"),
    "campaign.withdraw_copy": N_("随县级活动撤回"),
    # Break-ins (cms.services.breakin).
    "breakin.start": N_("立即插播"),
    "breakin.end": N_("结束插播"),
    "breakin.played": N_("插播已播放"),
    "announcement.emergency_approve": N_("按紧急规则通过（立即插播）"),
    # Terminals (cms.services.terminals).
    "terminal.register": N_("登记终端"),
    "terminal.revoke": N_("停用终端"),
}


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
