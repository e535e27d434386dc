"""Benchmark: outlet programs from shared mastered clips, against a naive pydub baseline.

Run ``python bench/programs.py [--outlets 1000] [--baseline-outlets 20]``. It

1. renders 30 announcements with the offline engine (eSpeak NG) and measures its speed
   as seconds of speech per CPU second of synthesis (mastering is timed separately);
2. builds one program per outlet (3–6 announcements each, repeats, gaps, chime and
   closing line) with :func:`audio.build_program`: frames joined byte by byte;
3. builds them all again with nothing changed;
4. builds the first ``--baseline-outlets`` programs the naive way (pydub decodes every
   clip, concatenates, exports an MP3 per outlet) and extrapolates its per-program time
   to all outlets: each program is independent work, so the cost is linear.

The last line is ``RESULT ratio=<baseline/ours> unchanged_s=<seconds> rtf_offline=<x>``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audio import DEFAULT_CLOSING, ProgramItem, Renderer, build_program, spoken_text  # noqa: E402
from audio.engines import OfflineEngine  # noqa: E402
from audio.ffmpeg import ffmpeg_exe  # noqa: E402
from audio.text import split_sentences  # noqa: E402
from audio.voices import VOICES  # noqa: E402

SUBJECTS = [
    "户长会", "森林防火", "停水通知", "疫苗接种", "医保缴费", "秸秆禁烧", "防汛演练", "道路施工",
    "门前五包", "绿美乡村", "主题党日", "反诈宣传", "农机补贴", "养老认证", "健康体检",
]  # fmt: skip
TEMPLATES = [
    "各位村民请注意，{s}将于{m}月{d}日上午{h}:30在村委会进行，请各户派一名代表准时参加。",
    "关于{s}的通知：{m}月{d}日至{d2}日期间，请大家相互转告，有问题请拨打0871-6512345{h}咨询。",
    "{s}提醒：近期气温{t}～{t2}℃，请大家注意安全，老人和儿童尽量不要单独外出。",
]


def texts(count: int) -> list[str]:
    rng = random.Random(7)
    out = []
    for i in range(count):
        template = TEMPLATES[i % len(TEMPLATES)]
        m, d = rng.randint(1, 12), rng.randint(1, 20)
        out.append(
            template.format(
                s=SUBJECTS[i % len(SUBJECTS)],
                m=m,
                d=d,
                d2=d + 3,
                h=rng.randint(7, 9),
                t=rng.randint(-5, 5),
                t2=rng.randint(6, 15),
            )  # fmt: skip
        )
    return out


def outlet_plan(clips: list, outlets: int) -> list[list[ProgramItem]]:
    rng = random.Random(11)
    plans = []
    for _ in range(outlets):
        chosen = rng.sample(range(len(clips)), rng.randint(3, 6))
        plans.append(
            [
                ProgramItem(
                    clips[i],
                    revision=f"{i}.1",
                    title=f"公告{i}",
                    repeats=rng.choice((1, 1, 2, 3)),
                    priority=rng.choice((0, 0, 5)),
                )  # fmt: skip
                for i in chosen
            ]
        )
    return plans


def naive_program(plan: list[ProgramItem], chime, closing, out: Path) -> None:  # type: ignore[no-untyped-def]
    """What one would write first: decode everything, concatenate, encode per outlet."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pydub import AudioSegment

    def load(clip):  # type: ignore[no-untyped-def]
        return AudioSegment.from_file(clip.path, format="mp3", codec="mp3")

    ordered = sorted(plan, key=lambda item: -item.priority)
    program = load(chime) + AudioSegment.silent(600, frame_rate=44100)
    for index, item in enumerate(ordered):
        if index:
            program += AudioSegment.silent(3000, frame_rate=44100)
        segment = load(item.clip)
        for repeat in range(item.repeats):
            if repeat:
                program += AudioSegment.silent(2000, frame_rate=44100)
            program += segment
    program += AudioSegment.silent(3000, frame_rate=44100) + load(closing)
    program.export(
        out, format="mp3", bitrate="64k", parameters=["-ac", "1", "-ar", "44100"],
        tags={"title": "bench", "date": "2024-03-05"},
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outlets", type=int, default=1000)
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--baseline-outlets", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dalaba-bench-"))
    try:
        renderer = Renderer(work / "cache", engine="offline")
        announcement_texts = texts(args.clips)
        spoken_text("预热")  # load wetext once, outside the timings

        engine = OfflineEngine()
        voice = VOICES["zh-CN-XiaoxiaoNeural"]
        speech_s = cpu_s = 0.0
        for i, text in enumerate(announcement_texts):
            sentences = split_sentences(spoken_text(text), 120)
            started = time.process_time()
            speech = engine.synthesize(sentences, voice, 0, work / f"rtf-{i}.wav")
            cpu_s += time.process_time() - started
            speech_s += speech.duration
        rtf = speech_s / cpu_s
        print(f"offline engine: {speech_s:.1f} s of speech in {cpu_s:.2f} CPU s ({rtf:.0f}x)")

        started = time.perf_counter()
        clips = [renderer.render(text) for text in announcement_texts]
        chime, closing = renderer.chime(), renderer.render(DEFAULT_CLOSING)
        render_s = time.perf_counter() - started
        clip_s = sum(c.duration for c in clips)
        print(
            f"rendered and mastered {len(clips)} clips ({clip_s:.0f} s of audio) in {render_s:.1f} s"
        )

        plans = outlet_plan(clips, args.outlets)
        out_dir = work / "programs"

        def build_all() -> tuple[float, int, float]:
            started = time.perf_counter()
            rebuilt, total = 0, 0.0
            for n, plan in enumerate(plans):
                result = build_program(
                    plan, out_dir / f"outlet-{n:04d}.mp3", title=f"村{n} 早间广播",
                    date="2024-03-05", chime=chime, closing=closing,
                )  # fmt: skip
                rebuilt += result.rebuilt
                total += result.duration
            return time.perf_counter() - started, rebuilt, total

        ours_s, rebuilt, total_audio = build_all()
        size = sum(p.stat().st_size for p in out_dir.glob("*.mp3"))
        print(
            f"ours: {args.outlets} programs ({total_audio / 3600:.1f} h of audio, "
            f"{size / 1e6:.0f} MB) in {ours_s:.2f} s, {rebuilt} built"
        )
        unchanged_s, rebuilt_again, _ = build_all()
        print(f"ours, nothing changed: {unchanged_s:.3f} s, {rebuilt_again} rebuilt")

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pydub import AudioSegment
        AudioSegment.converter = ffmpeg_exe()
        sample = plans[: args.baseline_outlets]
        started = time.perf_counter()
        for n, plan in enumerate(sample):
            naive_program(plan, chime, closing, work / f"naive-{n}.mp3")
        naive_s = time.perf_counter() - started
        per_program = naive_s / len(sample)
        baseline_s = per_program * args.outlets
        print(
            f"baseline (pydub decode+concat+export): {len(sample)} programs in {naive_s:.1f} s, "
            f"{per_program:.2f} s each -> {baseline_s:.0f} s for {args.outlets} (extrapolated)"
        )
        ratio = baseline_s / ours_s
        print(
            f"speed-up {ratio:.0f}x (goal >= 20x); unchanged rebuild {unchanged_s:.2f} s (goal < 2 s)"
        )
        print(f"RESULT ratio={ratio:.1f} unchanged_s={unchanged_s:.3f} rtf_offline={rtf:.1f}")
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
