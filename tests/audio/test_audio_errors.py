"""audio's errors and reasons: a message id with parameters, and the Chinese sentence as str()."""

from __future__ import annotations

import ast
import errno
import pickle
from pathlib import Path

import pytest

import audio.errors as errors_module
from audio.errors import (
    N_,
    AudioError,
    DiskFullError,
    EdgeError,
    NeuralError,
    Reason,
    TextError,
    VoiceError,
)
from audio.text import spoken_text
from audio.voices import check_rate, get_voice
from cms.queue import error_message
from cms.services.errors import Message

AUDIO = Path(errors_module.__file__).parent


def test_an_error_keeps_its_message_id_and_parameters() -> None:
    exc = TextError(N_("文本过长（{length} 字），单条公告最多 {limit} 字"), length=3001, limit=3000)
    assert exc.msgid == "文本过长（{length} 字），单条公告最多 {limit} 字"
    assert exc.params == {"length": 3001, "limit": 3000}
    assert str(exc) == "文本过长（3001 字），单条公告最多 3000 字"
    assert isinstance(exc, ValueError) and exc.message == Reason(exc.msgid, exc.params)
    assert str(AudioError(N_("节目中没有任何内容"))) == "节目中没有任何内容"
    assert str(AudioError()) == "" and AudioError().params == {}


def test_parameters_are_kept_as_json_values_or_reasons() -> None:
    nested = Reason.of(N_("编码音频"))
    exc = AudioError(N_("{what}失败（ffmpeg：{detail}）"), what=nested, detail=Path("/tmp/a"))
    assert exc.params == {"what": nested, "detail": "/tmp/a"}
    assert str(exc) == "编码音频失败（ffmpeg：/tmp/a）"
    # A template whose placeholders do not match still gives a sentence, never raises.
    assert str(AudioError(N_("{missing}"), other=1)) == "{missing}"


def test_library_errors_carry_message_ids() -> None:
    with pytest.raises(TextError) as caught:
        spoken_text("🎉🎉🎉")
    assert caught.value.msgid == "文本中没有可朗读的内容" and caught.value.params == {}
    with pytest.raises(VoiceError) as voice:
        get_voice("zh-CN-Nobody")
    assert voice.value.params["name"] == "'zh-CN-Nobody'"
    assert str(voice.value).startswith("不支持的发音人：'zh-CN-Nobody'（可选：")
    with pytest.raises(VoiceError) as rate:
        check_rate(80)
    assert str(rate.value) == "语速应为 -50 到 50 之间的整数（百分比），当前为 80"
    assert rate.value.params == {"low": -50, "high": 50, "rate": "80"}


def test_edge_error_keeps_its_reason() -> None:
    why = Reason.of(N_("服务返回 HTTP {status}"), status=502)
    exc = EdgeError(N_("在线语音合成失败（已尝试 {attempts} 次）：{reason}"), why, attempts=3)
    assert exc.reason == why and exc.params == {"reason": why, "attempts": 3}
    assert str(exc) == "在线语音合成失败（已尝试 3 次）：服务返回 HTTP 502"
    assert EdgeError("失败", reason="旧的理由").reason == Reason("旧的理由")


def test_disk_full_is_an_oserror_with_a_message_id() -> None:
    exc = DiskFullError()
    assert isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    assert str(exc) == "磁盘空间不足，无法写入音频文件" and exc.msgid == str(exc)
    what = Reason.of(N_("编码音频"))
    named = DiskFullError(N_("{what}失败：磁盘空间不足，无法写入音频文件"), what=what)
    assert str(named) == "编码音频失败：磁盘空间不足，无法写入音频文件"
    assert named.strerror == str(named) and named.params == {"what": what}


def test_a_reason_is_stored_in_the_cms_message_shape() -> None:
    why = Reason.of(
        N_("{edge}；离线神经语音不可用：{neural}，已改用离线语音"),
        edge=Reason.of(
            N_("在线语音不可用：{reason}"), reason=Reason(N_("服务拒绝访问（HTTP 403）"))
        ),
        neural=NeuralError(N_("离线神经语音模型文件夹不存在：{folder}"), folder="/m").message,
    )
    stored = why.dumps()
    assert Reason.loads(stored) == why and str(Reason.loads(stored)) == str(why)
    assert str(why) == (
        "在线语音不可用：服务拒绝访问（HTTP 403）；离线神经语音不可用："
        "离线神经语音模型文件夹不存在：/m，已改用离线语音"
    )
    message = Message.loads(stored)
    assert message.dumps() == stored and message.render() == str(why)
    english = {
        "服务拒绝访问（HTTP 403）": "refused",
        "在线语音不可用：{reason}": "online down: {reason}",
    }
    assert message.render(lambda m: english.get(m, m)).startswith("online down: refused；")
    # Older rows hold a plain sentence: read as a message without parameters.
    assert Reason.loads("在线语音不可用，已改用离线语音：超时") == Reason(
        "在线语音不可用，已改用离线语音：超时"
    )


def test_the_scheduler_stores_the_message_not_the_sentence() -> None:
    exc = AudioError(
        N_("{what}失败（ffmpeg：{detail}）"), what=Reason(N_("编码音频")), detail="x" * 900
    )
    message = error_message(exc, limit=50)
    assert message.msgid == exc.msgid
    assert message.params == {"what": Message("编码音频"), "detail": "x" * 50}
    assert Message.loads(message.dumps()) == message


def test_errors_survive_pickling() -> None:
    exc = pickle.loads(pickle.dumps(TextError(N_("读音词典中“{written}”重复出现"), written="乡")))
    assert str(exc) == "读音词典中“乡”重复出现" and exc.params == {"written": "乡"}
    why = Reason(N_("服务拒绝访问（HTTP 403）"))
    edge = pickle.loads(pickle.dumps(EdgeError(N_("失败：{reason}"), why)))
    assert (
        isinstance(edge, EdgeError)
        and edge.reason == why
        and str(edge) == "失败：服务拒绝访问（HTTP 403）"
    )
    full = pickle.loads(pickle.dumps(DiskFullError()))
    assert full.errno == errno.ENOSPC and str(full) == "磁盘空间不足，无法写入音频文件"


def _audio_error_names() -> set[str]:
    return {
        name
        for name, value in vars(errors_module).items()
        if isinstance(value, type) and issubclass(value, AudioError)
    }


def test_every_raise_in_audio_passes_a_marked_message_id() -> None:
    """No f-string sentences: each audio error's message is ``N_("…")`` or a msgid variable."""
    names = _audio_error_names()
    offenders = []
    for path in sorted(AUDIO.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in names or not node.args:
                continue
            first = node.args[0]
            marked = (
                isinstance(first, ast.Call)
                and isinstance(first.func, ast.Name)
                and first.func.id == "N_"
                and isinstance(first.args[0], ast.Constant)
            )
            if not marked and not isinstance(first, ast.Name):
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, offenders
