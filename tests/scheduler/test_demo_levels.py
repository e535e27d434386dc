"""The demo township's day, measured: every file a loudspeaker or a phone gets meets its targets."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from audio.ffmpeg import measure_loudness
from audio.master import PROFILES, Profile
from audio.mp3 import HOUSE_FORMAT, parse_frames
from cms.demo import seed
from cms.models import Clip, ClipProfile, JobState, OutletKind, Program
from cms.services import operators
from robots import wecom

LOUDNESS_TOLERANCE_LU = 0.5
TARGETS = {
    ClipProfile.LOUDSPEAKER: PROFILES[Profile.LOUDSPEAKER],
    ClipProfile.VOICE: PROFILES[Profile.VOICE_NOTE],
}


def test_every_file_of_a_demo_day_meets_its_loudness_target_and_true_peak_ceiling(  # type: ignore[no-untyped-def]
    scheduler, settings, session, today, clock, fresh_session, tmp_path
) -> None:
    """Seeds the demo, runs the day's first pass and measures every clip (and its WeCom
    conversions), program and loop."""
    # Installed at the test clock's time (03:00), so every slot of the day is ahead.
    seed(session, settings, today=today, now=clock.now())
    session.commit()
    scheduler.run_once()

    s = fresh_session()
    measured: list[tuple[str, str, float, float, float, float]] = []
    clips = s.scalars(select(Clip)).all()
    assert {c.profile for c in clips} == {ClipProfile.LOUDSPEAKER, ClipProfile.VOICE}
    assert all(c.state is JobState.DONE and c.path for c in clips)
    for clip in clips:
        spec = TARGETS[clip.profile]
        files = [Path(clip.path)]  # type: ignore[arg-type]
        if clip.profile is ClipProfile.VOICE:
            # WeCom gets phone clips again as AMR voice messages or MP3 files.
            for name, convert in (("amr", wecom.to_amr), ("mp3", wecom.to_mp3)):
                files.append(tmp_path / f"{clip.id}.{name}")
                files[-1].write_bytes(convert(files[0]))
        for file in files:
            level = measure_loudness(file)
            measured.append(
                (str(clip.profile), str(file), level.integrated, spec.integrated_lufs,
                 level.true_peak, spec.true_peak_dbtp)
            )  # fmt: skip

    loudspeaker = TARGETS[ClipProfile.LOUDSPEAKER]
    programs = s.scalars(select(Program).where(Program.day == today)).all()
    built = [p for p in programs if operators.program_file(settings, p) is not None]
    assert len(built) == len(programs) == 4 * 4  # 4 villages: 3 slots + 1 mobile each
    loops = 0
    for program in built:
        path = operators.program_file(settings, program)
        assert path is not None
        files = [path]
        if program.outlet.kind is OutletKind.MOBILE:
            loop = operators.loop_file(settings, program, program.outlet.loop_minutes)
            duration = parse_frames(loop.read_bytes()).duration
            # The "30-minute loop" lasts 30 minutes (to one MP3 frame).
            assert abs(duration - program.outlet.loop_minutes * 60) <= HOUSE_FORMAT.frame_seconds
            files.append(loop)
            loops += 1
        for file in files:
            level = measure_loudness(file)
            measured.append(
                ("program", str(file), level.integrated, loudspeaker.integrated_lufs,
                 level.true_peak, loudspeaker.true_peak_dbtp)
            )  # fmt: skip
    assert loops == 4

    failures = [
        f"{kind} {Path(path).name}: {integrated:.1f} LUFS (target {target:.1f}), "
        f"{peak:.2f} dBTP (ceiling {ceiling:.1f})"
        for kind, path, integrated, target, peak, ceiling in measured
        if abs(integrated - target) > LOUDNESS_TOLERANCE_LU or peak > ceiling
    ]
    assert not failures, "\n".join(failures)
