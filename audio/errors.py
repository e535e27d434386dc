"""The audio package's exception tree.

Every error carries a message in Chinese that can be shown to an officer as is;
the CMS turns them into flash messages, the bot into replies, the CLI into exit codes.

```
AudioError
├── TextError          the text cannot be spoken (empty, only symbols, too long)
├── VoiceError         unknown voice or rate out of range (also a ValueError)
├── SynthesisError     a speech engine failed
│   ├── EdgeError      edge-tts failed after its retries
│   └── OfflineError   the offline engine (eSpeak NG) failed
├── RecordingError     an uploaded recording is unusable
├── MasteringError     ffmpeg failed while mastering or measuring
└── ProgramError       a program cannot be built from the given clips
```
"""

from __future__ import annotations

__all__ = [
    "AudioError",
    "EdgeError",
    "MasteringError",
    "OfflineError",
    "ProgramError",
    "RecordingError",
    "SynthesisError",
    "TextError",
    "VoiceError",
]


class AudioError(Exception):
    """Base class of every error raised by :mod:`audio`."""


class TextError(AudioError, ValueError):
    """The text has nothing speakable in it, or is too long to render."""


class VoiceError(AudioError, ValueError):
    """A voice outside the whitelist, or a rate outside −50…+50 %."""


class SynthesisError(AudioError):
    """A speech engine failed to produce usable audio."""


class EdgeError(SynthesisError):
    """edge-tts (online) failed after the configured retries.

    Attributes:
        reason: a short description of the last failure, kept as the clip's fallback reason.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class OfflineError(SynthesisError):
    """The offline engine (eSpeak NG) is missing or failed."""


class RecordingError(AudioError):
    """An uploaded recording is not audio, too short, too long or silent."""


class MasteringError(AudioError):
    """ffmpeg failed while decoding, measuring or encoding."""


class ProgramError(AudioError):
    """A program cannot be built: a clip is missing or not in the house format."""
