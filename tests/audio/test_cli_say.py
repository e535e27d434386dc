"""``dalaba say`` through click's CliRunner."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from audio import measure_loudness
from audio.mp3 import HOUSE_FORMAT, parse_frames
from cms.cli_audio import say
from tests.audio.helpers import FAST_RETRY
from tests.audio.neural_model import write_tiny_vits
from tests.fakes.edge_server import FakeEdgeServer, Fault


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DALABA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DALABA_EDGE_WSS_URL", raising=False)
    monkeypatch.delenv("DALABA_TTS_ENGINE", raising=False)
    monkeypatch.delenv("DALABA_NEURAL_MODEL_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    # The command builds its renderer with the default retry policy; keep backoff out of
    # the test's wall time.
    monkeypatch.setattr("audio.render.RetryPolicy", lambda: FAST_RETRY)
    return CliRunner()


def test_print_spoken_only_normalises(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(say, ["明天8:00-10:00在3组开会，气温-5℃", "--print-spoken"])
    assert result.exit_code == 0, result.output
    assert result.output == "明天八点到十点在三组开会，气温负五摄氏度\n"
    assert not (tmp_path / "data").exists()


def test_offline_mp3(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(say, ["请注意防火。", "--engine", "offline", "-o", "fire.mp3"])
    assert result.exit_code == 0, result.output
    assert "已生成 fire.mp3" in result.output and "离线语音" in result.output
    data = (tmp_path / "fire.mp3").read_bytes()
    assert data.startswith(b"ID3") and "请注意防火。".encode("utf-16") in data[:300]
    assert parse_frames(data).format == HOUSE_FORMAT
    assert (tmp_path / "data" / "audio" / "cache" / "clips").is_dir()


def test_edge_through_environment_url(
    runner: CliRunner, tmp_path: Path, edge: FakeEdgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edge_tts.communicate

    monkeypatch.setattr(edge_tts.communicate, "WSS_URL", "wss://unreachable.invalid/x?y=1")
    monkeypatch.setenv("DALABA_EDGE_WSS_URL", edge.url)
    result = runner.invoke(
        say, ["各位村民请注意。", "--voice", "zh-CN-YunjianNeural", "--rate", "-20", "-o", "n.ogg"]
    )
    assert result.exit_code == 0, result.output
    assert "在线语音" in result.output and "云健" in result.output
    (request,) = edge.requests
    assert request.rate == "-20%" and "YunjianNeural" in request.voice
    data = (tmp_path / "n.ogg").read_bytes()
    assert data.startswith(b"OggS") and b"OpusHead" in data
    assert measure_loudness(tmp_path / "n.ogg").integrated == pytest.approx(-16, abs=1)


def test_fallback_is_announced_on_stderr(
    runner: CliRunner, tmp_path: Path, edge: FakeEdgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DALABA_EDGE_WSS_URL", edge.url)
    edge.fail(Fault.FORBIDDEN, times=None)
    result = runner.invoke(say, ["测试回退。"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "注意：在线语音不可用，已改用离线语音" in result.stderr
    assert (tmp_path / "dalaba-say.mp3").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["★★★"], "没有可朗读的内容"),
        (["你好", "-o", "x.wav"], "不支持的输出格式"),
        (["你好", "--rate", "90"], "90"),
        (["你好", "--voice", "en-US-Evil'/>"], "en-US-Evil"),
    ],
)
def test_errors_exit_non_zero_with_chinese_messages(
    runner: CliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(say, args)
    assert result.exit_code != 0
    assert message in result.output


def test_edge_failure_in_edge_mode(
    runner: CliRunner, edge: FakeEdgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DALABA_EDGE_WSS_URL", edge.url)
    edge.fail(Fault.EMPTY, times=None)
    result = runner.invoke(say, ["你好。", "--engine", "edge"])
    assert result.exit_code == 1
    assert "在线语音合成失败" in result.output


def test_bad_environment_values(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DALABA_EDGE_WSS_URL", "http://not-a-websocket")
    result = runner.invoke(say, ["你好。"])
    assert result.exit_code == 1 and "DALABA_EDGE_WSS_URL" in result.output
    monkeypatch.delenv("DALABA_EDGE_WSS_URL")
    monkeypatch.setenv("DALABA_TTS_ENGINE", "cloud")
    result = runner.invoke(say, ["你好。"])
    assert result.exit_code == 1 and "DALABA_TTS_ENGINE" in result.output


def test_text_from_stdin(runner: CliRunner) -> None:
    result = runner.invoke(say, ["-", "--print-spoken"], input="第3-5条\n")
    assert result.output == "第三到五条\n"


def test_neural_verbose_reports_the_real_time_factor(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DALABA_NEURAL_MODEL_DIR", str(write_tiny_vits(tmp_path / "model")))
    args = ["各位村民请注意。明天开会！", "--engine", "neural", "--verbose", "-o", "n.mp3"]
    result = runner.invoke(say, args)
    assert result.exit_code == 0, result.output
    assert "已生成 n.mp3" in result.output and "离线神经语音" in result.output
    line = next(x for x in result.output.splitlines() if "实时率" in x)
    assert re.search(r"合成 2\.30 秒音频用时 \d+\.\d{3} 秒，实时率 RTF=\d+\.\d{3}，\d 个线程", line)
    assert parse_frames((tmp_path / "n.mp3").read_bytes()).format == HOUSE_FORMAT
    again = runner.invoke(say, args)
    assert "语音取自缓存，本次没有重新合成" in again.output


def test_neural_without_a_model_is_a_clear_error(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = runner.invoke(say, ["你好。", "--engine", "neural"])
    assert result.exit_code == 1 and "DALABA_NEURAL_MODEL_DIR" in result.output
    monkeypatch.setenv("DALABA_NEURAL_MODEL_DIR", str(tmp_path / "nowhere"))
    result = runner.invoke(say, ["你好。", "--engine", "neural"])
    assert result.exit_code == 1 and "离线神经语音模型文件夹不存在" in result.output
    assert not (tmp_path / "dalaba-say.mp3").exists()
