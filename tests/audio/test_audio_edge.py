"""edge-tts through the loopback server: the real client, the protocol, faults and fallback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import edge_tts.communicate
import pytest

from audio import VOICES, EdgeError, Renderer, RetryPolicy
from audio.engines import EDGE_BITRATE_BPS, EdgeEngine
from audio.mp3 import parse_frames
from tests.audio.helpers import FAST_RETRY, FakeClock
from tests.fakes.edge_server import FakeEdgeServer, Fault

XIAOXIAO = VOICES["zh-CN-XiaoxiaoNeural"]


def engine(sleeps: list[float], **kwargs: object) -> EdgeEngine:
    return EdgeEngine(retry=kwargs.pop("retry", FAST_RETRY), sleep=sleeps.append, **kwargs)  # type: ignore[arg-type]


def test_normal_synthesis(edge: FakeEdgeServer, tmp_path: Path, sleeps: list[float]) -> None:
    speech = engine(sleeps).synthesize(
        ["各位村民请注意。明天开会！"], VOICES["zh-CN-YunjianNeural"], 10, tmp_path / "a.mp3"
    )
    (request,) = edge.requests
    assert request.voice == "Microsoft Server Speech Text to Speech Voice (zh-CN, YunjianNeural)"
    assert request.rate == "+10%"
    assert request.text == "各位村民请注意。明天开会！"
    assert request.config["context"]["synthesis"]["audio"]["outputFormat"] == (
        "audio-24khz-48kbitrate-mono-mp3"
    )
    assert speech.duration == pytest.approx(edge.expected_seconds(request.text))
    frames = parse_frames(speech.path.read_bytes())
    assert frames.format.sample_rate == 24_000
    assert frames.duration == pytest.approx(speech.duration, abs=0.03)
    assert [c.text for c in speech.cues] == ["各位村民请注意。", "明天开会！"]
    assert speech.cues[0].start == 0 and speech.cues[1].start > speech.cues[0].end
    assert sleeps == []


def test_xml_special_characters_reach_the_service_intact(
    edge: FakeEdgeServer, tmp_path: Path, sleeps: list[float]
) -> None:
    text = "A<B & C>D \"双引号\" '单引号' &amp;"
    speech = engine(sleeps).synthesize([text], XIAOXIAO, 0, tmp_path / "a.mp3")
    (request,) = edge.requests
    assert request.text == text  # the server parsed the SSML as XML: it was well-formed
    assert "&lt;B &amp; C&gt;D" in request.ssml
    assert speech.cues[0].text == text  # boundary text is unescaped again


@pytest.mark.slow
def test_very_long_text_is_chunked_in_order(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer]
) -> None:
    sentences = [f"第{i}条：请清理门前杂物。" for i in range(1, 131)]
    text = "".join(sentences)  # 1,600 characters, 4,700 UTF-8 bytes, no spaces or newlines
    assert len(text.encode()) > 4096
    edge.char_frames = 2  # 48 ms per character keeps the audio (and mastering) short
    clip = make_renderer("edge").render(text)
    received = [r.text for r in edge.requests]
    assert len(received) > 1
    assert all(len(t.encode()) < 4096 for t in received)
    from audio import spoken_text

    assert "".join(received) == spoken_text(text)  # nothing dropped, nothing twice
    expected = sum(edge.expected_seconds(t) for t in received)
    assert clip.duration == pytest.approx(expected, abs=1.0)
    assert clip.engine == "edge" and clip.fallback_reason is None


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.FORBIDDEN, "403"),
        (Fault.CUT, "音频流中断"),
        (Fault.EMPTY, "没有收到音频"),
        (Fault.RESET, "连接中断"),
        (Fault.GARBAGE, "服务响应格式异常"),
    ],
)
def test_faults_are_retried_then_reported(
    edge: FakeEdgeServer, tmp_path: Path, sleeps: list[float], fault: Fault, reason: str
) -> None:
    edge.fail(fault, times=None)
    retry = RetryPolicy(attempts=3, backoff_s=0.5, max_backoff_s=0.8, timeout_s=1.0)
    with pytest.raises(EdgeError, match=reason) as info:
        engine(sleeps, retry=retry).synthesize(["测试。"], XIAOXIAO, 0, tmp_path / "a.mp3")
    assert reason in str(info.value.reason)
    assert sleeps == [0.5, 0.8]  # backoff doubles, capped
    # edge-tts retries a 403 once inside each of our attempts
    assert edge.connections >= (6 if fault is Fault.FORBIDDEN else 3)
    assert not (tmp_path / "a.mp3").exists()


def test_refused_connection(edge: FakeEdgeServer, tmp_path: Path, sleeps: list[float]) -> None:
    with edge.refusing(), pytest.raises(EdgeError, match="无法连接") as info:
        engine(sleeps).synthesize(["测试。"], XIAOXIAO, 0, tmp_path / "a.mp3")
    assert "无法连接服务" in str(info.value.reason)
    assert info.value.reason.msgid == "无法连接服务（{detail}）"


@pytest.mark.slow
def test_stalled_service_times_out(
    edge: FakeEdgeServer, tmp_path: Path, sleeps: list[float]
) -> None:
    edge.fail(Fault.SLOW, times=None)
    retry = RetryPolicy(attempts=1, timeout_s=0.5)
    with pytest.raises(EdgeError, match="超时"):
        engine(sleeps, retry=retry).synthesize(["测试。"], XIAOXIAO, 0, tmp_path / "a.mp3")


def test_a_transient_fault_is_absorbed_by_a_retry(
    edge: FakeEdgeServer, tmp_path: Path, sleeps: list[float]
) -> None:
    edge.fail(Fault.CUT, times=1)
    speech = engine(sleeps).synthesize(["测试一下。"], XIAOXIAO, 0, tmp_path / "a.mp3")
    assert edge.faults_served == [Fault.CUT]
    assert sleeps == [0.5]
    assert speech.duration == pytest.approx(edge.expected_seconds("测试一下。"))
    assert len(speech.path.read_bytes()) * 8 / EDGE_BITRATE_BPS == speech.duration


@pytest.mark.parametrize(
    "fault",
    [
        Fault.FORBIDDEN,
        Fault.CUT,
        Fault.EMPTY,
        "refused",
        pytest.param(Fault.SLOW, marks=pytest.mark.slow),
    ],
)
def test_auto_mode_falls_back_offline_with_reason(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer], fault: Fault | str
) -> None:
    renderer = make_renderer("auto")
    if fault == "refused":
        with edge.refusing():
            clip = renderer.render("村民请注意。")
        expected = "无法连接服务"
    else:
        edge.fail(fault, times=None)  # type: ignore[arg-type]
        clip = renderer.render("村民请注意。")
        expected = {
            Fault.FORBIDDEN: "403",
            Fault.CUT: "音频流中断",
            Fault.EMPTY: "没有收到音频",
            Fault.SLOW: "超时",
        }[fault]  # type: ignore[index]
    assert clip.engine == "offline"
    assert clip.fallback is not None
    assert clip.fallback.msgid == "在线语音不可用，已改用离线语音：{reason}"
    assert "已改用离线语音" in str(clip.fallback) and expected in str(clip.fallback)
    assert clip.path.exists() and clip.duration > 0.5


def test_fallback_cooldown_then_recovery(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer], clock: FakeClock
) -> None:
    renderer = make_renderer("auto")
    edge.fail(Fault.FORBIDDEN, times=None)
    first = renderer.render("第一条。")
    tried = edge.connections
    second = renderer.render("第二条。")
    assert first.engine == second.engine == "offline"
    assert edge.connections == tried  # cooling down: no network at all
    assert "冷却" not in str(first.fallback)
    assert "刚才失败" in str(second.fallback)

    edge.heal()
    clock.advance(FAST_RETRY.cooldown_s + 1)
    third = renderer.render("第二条。")
    assert third.engine == "edge" and third.fallback_reason is None
    # the edge clip is now cached: rendering again needs no network
    before = edge.connections
    assert renderer.render("第二条。") == third
    assert edge.connections == before


def test_edge_mode_raises_instead_of_falling_back(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer]
) -> None:
    edge.fail(Fault.EMPTY, times=None)
    with pytest.raises(EdgeError, match="在线语音合成失败"):
        make_renderer("edge").render("测试。")


def test_wss_url_setting_is_used_and_restored(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge_tts.communicate, "WSS_URL", "wss://unreachable.invalid/edge/v1?x=1")
    clip = make_renderer("edge", edge_wss_url=edge.url).render("网址设置。")
    assert clip.engine == "edge" and len(edge.requests) == 1
    assert edge_tts.communicate.WSS_URL == "wss://unreachable.invalid/edge/v1?x=1"


def test_bad_wss_url_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Renderer(tmp_path, edge_wss_url="http://example.org/edge/v1?a=1")
    with pytest.raises(ValueError):
        Renderer(tmp_path, edge_wss_url="ws://127.0.0.1:1/edge/v1")


def test_serving_helper_patches_and_restores() -> None:
    from tests.fakes.edge_server import serving_edge_tts

    before = edge_tts.communicate.WSS_URL
    with serving_edge_tts() as server:
        assert server.url == edge_tts.communicate.WSS_URL
        assert server.url.startswith("ws://127.0.0.1:") and "?TrustedClientToken=" in server.url
    assert before == edge_tts.communicate.WSS_URL


def test_cached_edge_speech_serves_other_profiles_during_an_outage(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer]
) -> None:
    renderer = make_renderer("auto")
    loud = renderer.render("停电通知。")
    edge.fail(Fault.FORBIDDEN, times=None)
    renderer.render("别的通知。")  # fails over and starts the cool-down
    note = renderer.render("停电通知。", profile="voice_note")
    assert note.engine == "edge" and note.fallback_reason is None
    assert note.source_key == loud.source_key
