"""Labels of the states and engines the pages, exports and the CLI show, as message ids.

Translated where they are shown (templates call ``_()`` on them; the CLI speaks Chinese).
"""

from __future__ import annotations

from cms.services.errors import N_

JOB_LABELS = {
    "pending": N_("排队中"),
    "running": N_("进行中"),
    "done": N_("已完成"),
    "failed": N_("失败"),
    "cancelled": N_("已取消"),
    "sending": N_("发送中"),
    "sent": N_("已发送"),
    "uncertain": N_("结果不确定"),
}
ENGINE_LABELS = {
    "edge": N_("在线语音"),
    "offline": N_("离线语音"),
    "recording": N_("人工录音"),
    "tone": N_("提示音"),
    "neural": N_("离线神经语音"),
}
ENGINE_MODE_LABELS = {
    "auto": N_("自动（在线优先，失败时离线）"),
    "edge": N_("仅在线语音"),
    "offline": N_("仅离线语音（eSpeak NG）"),
    "neural": N_("仅离线神经语音"),
}
"""The engine modes a township or outlet may choose (:data:`cms.settings.TTS_ENGINES`)."""
