"""``dalaba say``: render one text to a mastered audio file from the command line."""

from __future__ import annotations

import datetime
import errno
import os
import sys
from pathlib import Path

import click

from audio.voices import DEFAULT_VOICE, MAX_RATE, MIN_RATE, VOICES

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
    type=click.Choice(["auto", "edge", "offline"]),
    default=None,
    help="语音引擎（默认取 DALABA_TTS_ENGINE，否则 auto：在线优先，失败时改用离线）",
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
def say(
    text: str, voice: str, engine: str | None, rate: int, output: Path, print_spoken: bool
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
    if engine not in {"auto", "edge", "offline"}:
        raise click.ClickException(
            f"DALABA_TTS_ENGINE 应为 auto、edge 或 offline（当前为 {engine!r}）"
        )
    data_dir = Path(os.environ.get("DALABA_DATA_DIR") or "dalaba-data").expanduser()
    try:
        renderer = Renderer(
            data_dir / "audio" / "cache",
            engine=engine,
            edge_wss_url=os.environ.get("DALABA_EDGE_WSS_URL") or None,
        )
    except ValueError as exc:
        raise click.ClickException(f"DALABA_EDGE_WSS_URL 无效：{exc}") from exc
    try:
        clip = renderer.render_spoken(spoken, voice=voice, rate=rate, profile=profile)
        title = " ".join(text.split())
        title = title if len(title) <= 30 else title[:29] + "…"
        export_file(clip, output, title=title, date=datetime.date.today().isoformat())
    except OSError as exc:  # before AudioError: audio's DiskFullError is an OSError too
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # the command group answers every full disk with the same message
        raise click.ClickException(f"无法写入 {output}：{exc.strerror or exc}") from exc
    except AudioError as exc:
        raise click.ClickException(str(exc)) from exc
    if clip.fallback_reason:
        click.echo(f"注意：{clip.fallback_reason}", err=True)
    from cms.services.labels import ENGINE_LABELS

    label = ENGINE_LABELS.get(str(clip.engine), str(clip.engine))
    click.echo(f"已生成 {output}（{clip.duration:.1f} 秒，{label}，{VOICES[voice].label}）")
