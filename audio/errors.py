"""The audio package's exception tree.

Every error carries a message in Chinese that can be shown to an officer as is;
the CMS turns them into flash messages, the bot into replies, the CLI into exit codes.

The message is also kept as a message id (the Chinese sentence with ``{name}``
placeholders, marked with :func:`N_` for extraction) and its parameters, so the CMS can
store it and show it in the reader's language. The audio package itself never
translates: ``str(exc)`` is the Chinese sentence. A parameter that needs translating
too is a :class:`Reason`; technical detail (ffmpeg's log, a path, another library's
exception text) is a plain string parameter. A :class:`Reason` stored as text
(:meth:`Reason.dumps`, e.g. a clip's fallback reason) has the shape the CMS's
``Message.loads`` reads.

```
AudioError
├── TextError          the text cannot be spoken (empty, only symbols, too long)
│   └── SilentSpeechError  speech made of the text is silence (also a SynthesisError)
├── VoiceError         unknown voice or rate out of range (also a ValueError)
├── SynthesisError     a speech engine failed
│   ├── EdgeError      edge-tts failed after its retries
│   ├── OfflineError   the offline engine (eSpeak NG) failed
│   └── NeuralError    the offline neural engine (sherpa-onnx) is missing or failed
├── RecordingError     an uploaded recording is unusable
├── MasteringError     ffmpeg failed while mastering or measuring
│   └── SilentAudioError   the audio measured as silence
├── ProgramError       a program cannot be built from the given clips
├── InstallError       a model download or archive was refused (checksum, size, unsafe paths)
└── DiskFullError      no space left to write audio (also an OSError with ENOSPC)
```
"""

from __future__ import annotations

import errno
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

__all__ = [
    "N_",
    "AudioError",
    "DiskFullError",
    "EdgeError",
    "InstallError",
    "MasteringError",
    "NeuralError",
    "OfflineError",
    "ProgramError",
    "Reason",
    "RecordingError",
    "SilentAudioError",
    "SilentSpeechError",
    "SynthesisError",
    "TextError",
    "VoiceError",
]


def N_(msgid: str) -> str:
    """Mark a message id for extraction; the CMS translates it where it is shown."""
    return msgid


def _param(value: object) -> Any:
    """A parameter as kept: a :class:`Reason`, a JSON scalar, or else its text."""
    if isinstance(value, Reason) or value is None or isinstance(value, str | int | float):
        return value
    return str(value)


def _format(msgid: str, params: Mapping[str, Any]) -> str:
    if not params:
        return msgid
    try:
        return msgid.format(**{name: str(value) for name, value in params.items()})
    except (KeyError, IndexError, ValueError):
        return msgid


@dataclass(frozen=True)
class Reason:
    """A message id (Chinese, with ``{name}`` placeholders) and its parameters.

    ``str()`` gives the Chinese sentence; :meth:`dumps` the stored form the CMS reads
    with ``cms.services.errors.Message.loads`` and shows in the reader's language.
    A parameter may itself be a :class:`Reason`.
    """

    msgid: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, msgid: str, /, **params: object) -> Self:
        """``Reason.of(N_("…{name}…"), name=value)``."""
        return cls(msgid, {name: _param(value) for name, value in params.items()})

    def render(self) -> str:
        """The Chinese sentence."""
        return _format(self.msgid, self.params)

    def __str__(self) -> str:
        return self.render()

    def to_json(self) -> dict[str, Any]:
        return {
            "msgid": self.msgid,
            "params": {
                name: value.to_json() if isinstance(value, Reason) else value
                for name, value in self.params.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        params = {
            name: cls.from_json(value) if _is_reason(value) else value
            for name, value in (data.get("params") or {}).items()
        }
        return cls(str(data["msgid"]), params)

    def dumps(self) -> str:
        """The reason as stored in a text column (JSON, readable by the CMS's ``Message``)."""
        return json.dumps(self.to_json(), ensure_ascii=False)

    @classmethod
    def loads(cls, text: str) -> Self:
        """What :meth:`dumps` wrote; any other text is a reason without parameters."""
        if text.startswith('{"msgid"'):
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if _is_reason(data):
                return cls.from_json(data)
        return cls(text)


def _is_reason(value: object) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("msgid"), str)
        and isinstance(value.get("params", {}), dict)
    )


def _rebuild(cls: type[AudioError], msgid: str, params: dict[str, Any]) -> AudioError:
    return cls(msgid, **params)


class AudioError(Exception):
    """Base class of every error raised by :mod:`audio`.

    ``AudioError(N_("…{name}…"), name=value)``: ``msgid`` and ``params`` keep the message
    for translation, ``str(exc)`` is the Chinese sentence.
    """

    msgid: str
    params: dict[str, Any]

    def __init__(self, message: str = "", /, **params: object) -> None:
        self.msgid = message
        self.params = {name: _param(value) for name, value in params.items()}
        super().__init__(_format(message, self.params))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from the message id and parameters (the default would pass the sentence).
        return (_rebuild, (type(self), self.msgid, self.params), self.__dict__)

    @property
    def message(self) -> Reason:
        """The message as a :class:`Reason` (e.g. to nest it in another message)."""
        return Reason(self.msgid, self.params)


class TextError(AudioError, ValueError):
    """The text has nothing speakable in it, or is too long to render."""


class VoiceError(AudioError, ValueError):
    """A voice outside the whitelist, or a rate outside −50…+50 %."""


class SynthesisError(AudioError):
    """A speech engine failed to produce usable audio."""


class EdgeError(SynthesisError):
    """edge-tts (online) failed after the configured retries.

    Attributes:
        reason: a short description of the last failure, kept in the clip's fallback reason.
    """

    def __init__(self, message: str, /, reason: Reason | str, **params: object) -> None:
        super().__init__(message, reason=reason, **params)
        self.reason = reason if isinstance(reason, Reason) else Reason(reason)


class OfflineError(SynthesisError):
    """The offline engine (eSpeak NG) is missing or failed."""


class NeuralError(SynthesisError):
    """The offline neural engine (sherpa-onnx and its model folder) is missing or failed."""


class RecordingError(AudioError):
    """An uploaded recording is not audio, too short, too long or silent."""


class MasteringError(AudioError):
    """ffmpeg failed while decoding, measuring or encoding."""


class ProgramError(AudioError):
    """A program cannot be built: a clip is missing or not in the house format."""


class InstallError(AudioError):
    """A model could not be installed: download failed, wrong checksum, unsafe or too large archive."""


class DiskFullError(AudioError, OSError):
    """The disk is full: ffmpeg or a file write found no space left on the device.

    Not a fault of the text or the recording: the same work succeeds once space is freed,
    so callers wait instead of failing. It is an :class:`OSError` with ``errno.ENOSPC``,
    so code that already treats a failed write as an ``OSError`` keeps working.
    """

    def __init__(
        self, message: str = N_("磁盘空间不足，无法写入音频文件"), /, **params: object
    ) -> None:
        self.msgid = message
        self.params = {name: _param(value) for name, value in params.items()}
        OSError.__init__(self, errno.ENOSPC, _format(message, self.params))

    def __str__(self) -> str:
        return str(self.strerror)


class SilentAudioError(MasteringError):
    """The audio has nothing audible in it (its loudness is below the silence floor)."""


class SilentSpeechError(TextError, SynthesisError):
    """The engine spoke the text as silence (e.g. a lone Latin letter): the same text gives
    the same silence, so retrying cannot help; the text must be rewritten."""
