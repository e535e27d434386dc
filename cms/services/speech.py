"""What an announcement will sound like: which engine speaks now, the clips to listen to,
and the short sample an editor hears before submitting.

Which engine really speaks is judged from what renders recently did (clip rows the
scheduler finished, samples this process rendered), never from a network call per page
view. The engines are described once, in :data:`ENGINES` and :data:`CHAINS`: adding an
engine is one entry in each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from cms import lease, tree
from cms.clock import clock_of
from cms.models import Area, Clip, ClipProfile, JobState, Revision
from cms.services.errors import N_, Message, audio_message
from cms.settings import Settings

if TYPE_CHECKING:
    from audio.render import Renderer
    from audio.text import Lexicon

LISTEN_CHARS = 150
"""The 试听 sample: the first sentences of the text, up to this many characters."""
OUTCOME_FRESH = timedelta(hours=1)
"""A render outcome older than this says nothing about whether the online voice works now."""


@dataclass(frozen=True)
class Outcome:
    """What one recent synthesis used, and why it fell back (``None``: it did not).

    ``fallback_reason`` is the clip's stored reason (see :attr:`audio.Clip.fallback_reason`).
    """

    at: datetime
    engine: str
    fallback_reason: str | None = None


@dataclass(frozen=True)
class EngineInfo:
    """One speech engine as the editor describes it.

    Attributes:
        label: msgid naming the engine for people.
        short: msgid of a short name, for the voice menu.
        named_voice: it speaks with the voice chosen in the menu (晓晓 …); eSpeak does not.
        unavailable: why it cannot speak now (a message), or ``None`` when it can.
    """

    label: str
    short: str
    named_voice: bool
    unavailable: Callable[[Settings, Outcome | None, datetime], Message | None]


def _edge_unavailable(settings: Settings, last: Outcome | None, now: datetime) -> Message | None:
    if last is None or now - last.at > OUTCOME_FRESH or last.fallback_reason is None:
        return None
    return Message(
        N_("在线语音 {time} 时不可用：{reason}"),
        {
            "time": last.at.astimezone(settings.tz).strftime("%H:%M"),
            "reason": Message.loads(last.fallback_reason),
        },
    )


def _always_available(settings: Settings, last: Outcome | None, now: datetime) -> Message | None:
    return None


def _neural_unavailable(settings: Settings, last: Outcome | None, now: datetime) -> Message | None:
    """The model folder's own check: files, then one trial load per model and process."""
    if settings.neural_model_dir is None:
        return Message(N_("没有设置离线神经语音模型（DALABA_NEURAL_MODEL_DIR）"))
    from audio.neural import unavailable_reason

    why = unavailable_reason(settings.neural_model_dir)
    if why is None:
        return None
    return Message(N_("离线神经语音不可用：{reason}"), {"reason": audio_message(why)})


def neural_speakers(settings: Settings) -> dict[str, tuple[str, str | None]]:
    """Which speaker of the neural model reads each menu voice: name → (label, gender).

    Labels come from the catalogue (through the installed folder's description); empty when
    no usable model folder is set. Cheap: the folder's files are rehashed only when changed.
    """
    if settings.neural_model_dir is None:
        return {}
    from audio.errors import NeuralError
    from audio.neural import locate_model
    from audio.voices import VOICES

    try:
        model = locate_model(settings.neural_model_dir)
    except NeuralError:
        return {}
    chosen = {name: model.speaker_for(voice) for name, voice in VOICES.items()}
    return {name: (speaker.label, speaker.gender) for name, speaker in chosen.items()}


ENGINES: dict[str, EngineInfo] = {
    "edge": EngineInfo(N_("在线语音（微软）"), N_("在线语音"), True, _edge_unavailable),
    "neural": EngineInfo(
        N_("离线神经语音（本机模型）"), N_("离线神经语音"), False, _neural_unavailable
    ),
    "offline": EngineInfo(N_("离线语音 eSpeak（机器声）"), "eSpeak", False, _always_available),
}
"""Every synthesis engine the renderer may use, by the name a clip records."""

CHAINS: dict[str, tuple[str, ...]] = {
    # auto tries the neural voice only when a model folder is configured (as the renderer).
    "auto": ("edge", "neural", "offline"),
    "edge": ("edge",),
    "neural": ("neural",),
    "offline": ("offline",),
}
"""The engines each ``DALABA_TTS_ENGINE`` mode tries, in order; the last one always answers."""


def _info(name: str) -> EngineInfo:
    """An engine's description; one not described yet is named as is and assumed to answer."""
    return ENGINES.get(name) or EngineInfo(name, name, False, _always_available)


@dataclass(frozen=True)
class EngineStatus:
    """Who will speak an announcement if it is rendered now.

    Attributes:
        engine: ``recording`` or a key of :data:`ENGINES`.
        label: msgid for people.
        short: msgid of a short name.
        named_voice: the voice chosen in the menu is the one heard.
        reason: why an engine earlier in the chain will not speak (``None`` if none).
        fails: the configured chain has no engine that can speak (``edge`` mode, edge down).
        checked_at: the render outcome the judgement rests on (``None``: none recent).
    """

    engine: str
    label: str
    short: str
    named_voice: bool
    reason: Message | None = None
    fails: bool = False
    checked_at: datetime | None = None


def last_outcome(session: Session, recent: Iterable[Outcome] = ()) -> Outcome | None:
    """The newest synthesis that tried the online voice: a clip row or a recent sample."""
    row = session.execute(
        select(Clip.updated_at, Clip.engine, Clip.fallback_reason)
        .where(
            Clip.state == JobState.DONE,
            or_(Clip.engine == "edge", Clip.fallback_reason.is_not(None)),
        )
        .order_by(Clip.updated_at.desc(), Clip.id.desc())
        .limit(1)
    ).first()
    candidates = list(recent)
    if row is not None:
        candidates.append(Outcome(row.updated_at, row.engine, row.fallback_reason))
    return max(candidates, key=lambda o: o.at, default=None)


def engine_status(
    settings: Settings,
    last: Outcome | None,
    *,
    recording: bool = False,
    now: datetime | None = None,
    mode: str | None = None,
) -> EngineStatus:
    """Which engine speaks if an announcement is rendered now, and why not a better one.

    ``mode`` is the township's engine mode when it has its own (else the install's).
    """
    if recording:
        return EngineStatus("recording", N_("人工录音"), N_("人工录音"), False)
    now = now or settings.now()
    mode = mode or settings.tts_engine
    chain = CHAINS.get(mode, (mode,))
    if mode == "auto" and settings.neural_model_dir is None:
        chain = tuple(name for name in chain if name != "neural")
    reason: Message | None = None
    for name in chain:
        info = _info(name)
        why = info.unavailable(settings, last, now)
        if why is None:
            checked = last.at if last else None
            return EngineStatus(
                name, info.label, info.short, info.named_voice, reason, checked_at=checked
            )
        reason = reason or why
    info = _info(chain[-1])
    return EngineStatus(chain[-1], info.label, info.short, info.named_voice, reason, fails=True)


# -- the clips a reviewer listens to -----------------------------------------------------


@dataclass(frozen=True)
class ClipSlot:
    """One profile of a revision: its clip row, if the scheduler has planned it."""

    profile: ClipProfile
    clip: Clip | None


def profiles_for(rev: Revision) -> list[ClipProfile]:
    """The clip profiles a revision goes out in: loudspeaker, chat voice note, or both."""
    wanted = []
    if rev.to_loudspeaker:
        wanted.append(ClipProfile.LOUDSPEAKER)
    if rev.to_chats:
        wanted.append(ClipProfile.VOICE)
    return wanted


def make_renderer(settings: Settings) -> Renderer:
    """A renderer on the data folder's content-addressed cache (the scheduler's and the samples')."""
    from audio.render import Renderer

    return Renderer(
        settings.audio_dir / "cache",
        engine=settings.tts_engine,
        edge_wss_url=settings.edge_wss_url,
        neural_model_dir=settings.neural_model_dir,
    )


def clip_slots(session: Session, revisions: Iterable[Revision]) -> dict[int, list[ClipSlot]]:
    """For each revision, its clips in the profiles it goes out in (loudspeaker first)."""
    revs = list(revisions)
    if not revs:
        return {}
    rows = session.scalars(select(Clip).where(Clip.revision_id.in_([r.id for r in revs])))
    by_key = {(c.revision_id, c.profile): c for c in rows}
    return {
        rev.id: [ClipSlot(profile, by_key.get((rev.id, profile))) for profile in profiles_for(rev)]
        for rev in revs
    }


def scheduler_running(session: Session, now: datetime | None = None) -> bool:
    """Whether a scheduler holds the lease (and so will render pending clips)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    return lease.read(engine).alive(now or clock_of(session).now())


# -- the 试听 sample -----------------------------------------------------------------------


def listen_text(text: str, limit: int = LISTEN_CHARS) -> str:
    """The first sentences of ``text`` up to ``limit`` characters (at least one piece)."""
    from audio.text import split_sentences

    pieces = split_sentences(text, max_chars=limit)
    chosen: list[str] = []
    for piece in pieces:
        if chosen and sum(map(len, chosen)) + len(piece) > limit:
            break
        chosen.append(piece)
    return "".join(chosen)


def lexicon(session: Session, area: Area | None = None) -> Lexicon:
    """The pronunciation lexicon as the renderer applies it in ``area`` (None: the county's)."""
    from audio.text import Lexicon

    return Lexicon(tuple(tree.lexicon_pairs(session, area)))
