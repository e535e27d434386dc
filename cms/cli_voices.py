"""``dalaba voices``: the catalogue of offline neural voices, installing and checking them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

CHECK_TEXT = "各位村民请注意，明天上午八点在村委会开会。"
"""The trial sentence ``voices check`` speaks and times."""


def _data_dir() -> Path:
    return Path(os.environ.get("DALABA_DATA_DIR") or "dalaba-data").expanduser()


def _root() -> Path:
    from audio.install import models_dir

    return models_dir(_data_dir())


def _mb(size: int | None) -> str:
    return "未知" if size is None else f"{size / 1_000_000:.0f} MB"


@click.group("voices")
def voices() -> None:
    """离线神经语音模型：目录、安装、试加载。

    模型从 sherpa-onnx 在 GitHub 上的发布页下载；网络访问 GitHub 不畅时，设置
    DALABA_MODEL_MIRROR 为镜像地址（保持 tts-models/文件名 的结构）。
    """


@voices.command("list")
def list_voices() -> None:
    """列出目录中的模型和已安装的模型（★ 为未设置 DALABA_NEURAL_MODEL_DIR 时使用的模型）。"""
    from audio.catalogue import CATALOGUE
    from audio.install import installed

    have = {item.name: item for item in installed(_root())}
    for entry in CATALOGUE:
        item = have.pop(entry.name, None)
        mark = ("★ 已安装" if item.default else "已安装") if item else "未安装"
        rate = f"{entry.sample_rate} Hz" if entry.sample_rate else "采样率未公布"
        click.echo(
            f"{entry.name}  [{mark}]\n"
            f"  {entry.family}，{entry.speakers_total} 位说话人，{rate}，"
            f"下载 {_mb(entry.download_size)}\n"
            f"  {entry.sounds_for}\n"
            f"  许可：{entry.licence}\n"
            f"  {entry.archive.url(_mirror())}\n"
            f"  SHA-256 {entry.archive.sha256 or '未知（安装时须用 --sha256 给出）'}"
        )
        if entry.vocoder is not None:
            click.echo(
                f"  声码器 {entry.vocoder.url(_mirror())}\n"
                f"  SHA-256 {entry.vocoder.sha256 or '未知'}（{_mb(entry.vocoder.size)}）"
            )
    for item in have.values():
        mark = "★ 已安装" if item.default else "已安装"
        click.echo(f"{item.name}  [{mark}，不在目录中]\n  {item.folder}")


def _mirror() -> str | None:
    return os.environ.get("DALABA_MODEL_MIRROR", "").strip() or None


def _progress_bars() -> tuple[Callable[[str], Callable[[int, int | None], None]], list[Any]]:
    """A callback factory drawing one click progress bar per downloaded file."""
    bars: list[Any] = []

    def for_file(name: str) -> Callable[[int, int | None], None]:
        drawn = [0]

        def update(done: int, total: int | None) -> None:
            if len(drawn) == 1:
                bar: Any = click.progressbar(length=total or 0, label=name, width=30)
                bar.__enter__()
                bars.append(bar)
                drawn.append(len(bars) - 1)
            bars[drawn[1]].update(done - drawn[0])
            drawn[0] = done

        return update

    return for_file, bars


@voices.command("install")
@click.argument("name_or_path")
@click.option("--sha256", default=None, help="压缩包的 SHA-256（目录中未知时必须给出）")
@click.option("--vocoder-sha256", default=None, help="声码器的 SHA-256（Matcha 模型）")
@click.option(
    "--vocoder",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="从 U 盘安装 Matcha 模型时，一并放入的声码器文件",
)
def install(
    name_or_path: str, sha256: str | None, vocoder_sha256: str | None, vocoder: Path | None
) -> None:
    """安装模型：NAME 为目录中的名称（下载，可断点续传），或 U 盘上压缩包的路径。"""
    from audio.catalogue import find
    from audio.errors import AudioError
    from audio.install import install_archive, install_entry
    from audio.neural import locate_model

    root = _root()
    path = Path(name_or_path).expanduser()
    entry = find(name_or_path)
    progress, bars = _progress_bars()
    try:
        if entry is not None and not path.is_file():
            base = _mirror()
            click.echo(
                f"下载 {entry.name}（{_mb(entry.download_size)}）自 {entry.archive.url(base)}"
            )
            result = install_entry(
                entry,
                root,
                base=base,
                sha256=sha256,
                vocoder_sha256=vocoder_sha256,
                progress=progress,
            )
        elif path.is_file():
            result = install_archive(path, root, sha256=sha256, vocoder=vocoder)
        else:
            raise click.ClickException(
                f"“{name_or_path}”既不是目录中的模型，也不是一个文件（dalaba voices list 列出目录）"
            )
        model = locate_model(result.folder)
    except AudioError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)
    click.echo(
        f"已安装 {result.name}（{model.family}，{len(model.speakers)} 位可选说话人）：{result.folder}\n"
        f"SHA-256 {result.sha256}\n"
        "未设置 DALABA_NEURAL_MODEL_DIR 时离线神经语音使用它；用 dalaba voices check 试加载。"
    )


@voices.command("check")
@click.argument("name", required=False)
def check(name: str | None) -> None:
    """试加载已安装的模型（在子进程中），朗读一句并报告实时率（RTF）。"""
    from audio.errors import AudioError
    from audio.install import installed
    from audio.neural import default_threads, probe

    items = [i for i in installed(_root()) if name is None or i.name == name]
    folder = os.environ.get("DALABA_NEURAL_MODEL_DIR", "").strip()
    targets = [(i.name, i.folder) for i in items]
    if folder and name is None:
        targets.append((Path(folder).name, Path(folder)))
    if not targets:
        raise click.ClickException(
            f"没有已安装的模型{f'“{name}”' if name else ''}：先运行 dalaba voices install"
        )
    failed = 0
    threads = default_threads()
    for label, path in targets:
        try:
            trial = probe(path, CHECK_TEXT, threads)
        except AudioError as exc:
            failed += 1
            click.echo(f"{label}：不可用：{exc}")
            click.echo(f"RESULT model={label} ok=0")
            continue
        click.echo(
            f"{label}：{trial.family}，{trial.sample_rate} Hz，{trial.speakers} 位说话人；"
            f"加载 {trial.load_s:.2f} 秒，{trial.audio_s:.2f} 秒语音用时 {trial.compute_s:.3f} 秒"
            f"（{threads} 个线程）"
        )
        click.echo(
            f"RESULT model={label} ok=1 family={trial.family} sample_rate={trial.sample_rate}"
            f" speakers={trial.speakers} rtf={trial.rtf:.4f} load_s={trial.load_s:.3f}"
        )
    if failed:
        raise SystemExit(1)


COMMANDS = [voices]
