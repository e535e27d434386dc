"""``dalaba say``: render one text to a mastered audio file from the command line."""

from __future__ import annotations

import datetime
import errno
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from audio.voices import DEFAULT_VOICE, MAX_RATE, MIN_RATE, VOICES
from cms.services.errors import Message
from cms.services.labels import ENGINE_LABELS
from cms.settings import TTS_ENGINES

if TYPE_CHECKING:
    from audio.engines import Speech

_SUFFIX_PROFILES = {
    ".mp3": "loudspeaker",
    ".ogg": "voice_note",
    ".opus": "voice_note",
    ".oga": "voice_note",
}


@click.command("say")
@click.argument("text")
@click.option(
    "--voice",
    type=click.Choice(list(VOICES)),
    default=DEFAULT_VOICE,
    show_default=True,
    help="发音人",
)
@click.option(
    "--engine",
    type=click.Choice(TTS_ENGINES),
    default=None,
    help="语音引擎（默认取 DALABA_TTS_ENGINE，否则 auto：在线优先，失败时依次改用"
    "离线神经语音（DALABA_NEURAL_MODEL_DIR 或 dalaba voices install 安装的模型）和离线语音）",
)
@click.option(
    "--rate",
    type=click.IntRange(MIN_RATE, MAX_RATE),
    default=0,
    show_default=True,
    help="语速（百分比，-50 到 50）",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("dalaba-say.mp3"),
    show_default=True,
    help="输出文件：.mp3 为大喇叭格式，.ogg/.opus 为手机语音消息格式",
)
@click.option("--print-spoken", is_flag=True, help="只打印规范化后的朗读文本，不生成音频")
@click.option(
    "-v", "--verbose", is_flag=True, help="报告合成用时与实时率（RTF = 合成用时 ÷ 音频时长）"
)
def say(
    text: str,
    voice: str,
    engine: str | None,
    rate: int,
    output: Path,
    print_spoken: bool,
    verbose: bool,
) -> None:
    """把一段文字生成为处理好的广播音频（TEXT 为 - 时从标准输入读取）。"""
    from audio import AudioError, Renderer, export_file, spoken_text

    if text == "-":
        text = sys.stdin.read()
    try:
        spoken = spoken_text(text)
    except AudioError as exc:
        raise click.ClickException(str(exc)) from exc
    if print_spoken:
        click.echo(spoken)
        return

    profile = _SUFFIX_PROFILES.get(output.suffix.lower())
    if profile is None:
        raise click.ClickException(
            f"不支持的输出格式“{output.suffix or '（无扩展名）'}”：请使用 .mp3、.ogg 或 .opus"
        )
    engine = engine or os.environ.get("DALABA_TTS_ENGINE") or "auto"
    if engine not in TTS_ENGINES:
        raise click.ClickException(
            f"DALABA_TTS_ENGINE 应为 auto、edge、offline 或 neural（当前为 {engine!r}）"
        )
    data_dir = Path(os.environ.get("DALABA_DATA_DIR") or "dalaba-data").expanduser()
    syntheses: list[tuple[str, Speech]] = []
    try:
        renderer = Renderer(
            data_dir / "audio" / "cache",
            engine=engine,
            edge_wss_url=os.environ.get("DALABA_EDGE_WSS_URL") or None,
            neural_model_dir=_neural_model_dir(data_dir),
            on_synthesis=lambda name, speech: syntheses.append((name, speech)),
        )
    except ValueError as exc:
        raise click.ClickException(f"DALABA_EDGE_WSS_URL 无效：{exc}") from exc
    try:
        clip = renderer.render_spoken(spoken, voice=voice, rate=rate, profile=profile)
        title = " ".join(text.split())
        title = title if len(title) <= 30 else title[:29] + "…"
        export_file(clip, output, title=title, date=_township_today().isoformat())
    except OSError as exc:  # before AudioError: audio's DiskFullError is an OSError too
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # the command group answers every full disk with the same message
        raise click.ClickException(f"无法写入 {output}：{exc.strerror or exc}") from exc
    except AudioError as exc:
        raise click.ClickException(str(exc)) from exc
    if clip.fallback_reason:
        click.echo(f"注意：{Message.loads(clip.fallback_reason).render()}", err=True)
    label = ENGINE_LABELS.get(str(clip.engine), str(clip.engine))
    click.echo(f"已生成 {output}（{clip.duration:.1f} 秒，{label}，{VOICES[voice].label}）")
    if verbose:
        _report_syntheses(syntheses, renderer.neural.num_threads)


def _neural_model_dir(data_dir: Path) -> Path | None:
    """``DALABA_NEURAL_MODEL_DIR``, else the model ``dalaba voices install`` installed last."""
    from audio.install import default_model, models_dir

    configured = os.environ.get("DALABA_NEURAL_MODEL_DIR", "").strip()
    return Path(configured).expanduser() if configured else default_model(models_dir(data_dir))


def _report_syntheses(syntheses: list[tuple[str, Speech]], neural_threads: int) -> None:
    """Print each fresh synthesis's timing; engines that measure it report their RTF."""
    if not syntheses:
        click.echo("语音取自缓存，本次没有重新合成（无实时率）")
    for name, speech in syntheses:
        label = ENGINE_LABELS.get(name, name)
        if speech.compute_s is None or speech.duration <= 0:
            click.echo(f"{label}：合成了 {speech.duration:.2f} 秒音频（该引擎不报告实时率）")
            continue
        threads = f"，{neural_threads} 个线程" if name == "neural" else ""
        click.echo(
            f"{label}：合成 {speech.duration:.2f} 秒音频用时 {speech.compute_s:.3f} 秒，"
            f"实时率 RTF={speech.compute_s / speech.duration:.3f}{threads}"
        )


def _township_today() -> datetime.date:
    """The township's date for the file's tag (``DALABA_TIMEZONE``, ``DALABA_FAKE_NOW``)."""
    from zoneinfo import ZoneInfo

    from cms.clock import clock_from_env, local_day

    try:
        tz = ZoneInfo(os.environ.get("DALABA_TIMEZONE") or "Asia/Shanghai")
        return local_day(clock_from_env(os.environ).now(), tz)
    except (ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise click.ClickException(f"DALABA_TIMEZONE 或 DALABA_FAKE_NOW 无效：{exc}") from exc
