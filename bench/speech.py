"""Benchmark: spoken text against plain wetext on the text-normalisation corpus.

Run ``python bench/speech.py [--show-misses]``. It reads every case of
``tests/audio/data/tn_corpus.tsv`` (written text, the reading a Mandarin listener expects,
a class), normalises it in the same run

1. with plain wetext (WeTextProcessing's runtime, the baseline), and
2. with :func:`audio.spoken_text` (wetext plus dalaba's own rewrites),

and scores each as an exact match after the corpus's canonicalisation (NFKC, whitespace and
punctuation removed: pauses are not scored). It prints a per-class table and the time per
case of each, then one line
``RESULT cases=<n> project=<rate> wetext=<rate> worse_than_wetext=<n>``, where the rates
are fractions of the cases read as expected (0.000–1.000) and ``worse_than_wetext`` counts
the cases wetext reads right and ``spoken_text`` does not. Target: project > wetext and
worse_than_wetext=0.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audio import spoken_text  # noqa: E402
from audio.text import wetext_only  # noqa: E402
from tests.audio.tn_corpus import CORPUS, load_corpus, matches  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--show-misses", action="store_true", help="print every miss")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    cases = load_corpus(args.corpus)
    wetext_only("预热")  # load the FSTs outside the timed loops

    started = time.perf_counter()
    baseline = [wetext_only(case.written) for case in cases]
    wetext_s = time.perf_counter() - started
    started = time.perf_counter()
    ours = [spoken_text(case.written) for case in cases]
    project_s = time.perf_counter() - started

    total: Counter[str] = Counter()
    ours_ok: Counter[str] = Counter()
    wetext_ok: Counter[str] = Counter()
    worse: list[tuple[str, str, str]] = []
    for case, theirs, mine in zip(cases, baseline, ours, strict=True):
        total[case.kind] += 1
        mine_ok, theirs_ok = matches(mine, case), matches(theirs, case)
        ours_ok[case.kind] += mine_ok
        wetext_ok[case.kind] += theirs_ok
        if theirs_ok and not mine_ok:
            worse.append((case.written, mine, case.spoken))
        if args.show_misses and not mine_ok:
            print(f"miss [{case.kind}] {case.written} → {mine} (expected {case.spoken})")

    print(f"{'class':<12} {'cases':>5} {'project':>8} {'wetext':>8}")
    for kind in sorted(total, key=lambda k: -total[k]):
        print(
            f"{kind:<12} {total[kind]:>5} {ours_ok[kind] / total[kind]:>8.3f}"
            f" {wetext_ok[kind] / total[kind]:>8.3f}"
        )
    n = len(cases)
    project, wetext = sum(ours_ok.values()) / n, sum(wetext_ok.values()) / n
    print(f"{'all':<12} {n:>5} {project:>8.3f} {wetext:>8.3f}")
    print(
        f"time per case: project {project_s / n * 1000:.2f} ms, wetext {wetext_s / n * 1000:.2f} ms"
    )
    for written, mine, expected in worse:
        print(f"worse than wetext: {written} → {mine} (expected {expected})")
    print(
        f"RESULT cases={n} project={project:.3f} wetext={wetext:.3f} worse_than_wetext={len(worse)}"
    )


if __name__ == "__main__":
    main()
