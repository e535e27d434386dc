"""The audio package's exception tree.

Every error carries a message in Chinese that can be shown to an officer as is;
the CMS turns them into flash messages, the bot into replies, the CLI into exit codes.

```
AudioError
├── TextError          the text cannot be spoken (empty, only symbols, too long)
├── VoiceError         unknown voice or rate out of range (also a ValueError)
├── SynthesisError     a speech engine failed
│   ├── EdgeError      edge-tts failed after its retries
│   ├── OfflineError   the offline engine (eSpeak NG) failed
│   └── NeuralError    the offline neural engine (sherpa-onnx) is missing or failed
├── RecordingError     an uploaded recording is unusable
├── MasteringError     ffmpeg failed while mastering or measuring
├── ProgramError       a program cannot be built from the given clips
└── DiskFullError      no space left to write audio (also an OSError with ENOSPC)
```
"""

from __future__ import annotations

import errno

__all__ = [
    "AudioError",
    "DiskFullError",
    "EdgeError",
    "MasteringError",
    "NeuralError",
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


class NeuralError(SynthesisError):
    """The offline neural engine (sherpa-onnx and its model folder) is missing or failed."""


class RecordingError(AudioError):
    """An uploaded recording is not audio, too short, too long or silent."""


class MasteringError(AudioError):
    """ffmpeg failed while decoding, measuring or encoding."""


class ProgramError(AudioError):
    """A program cannot be built: a clip is missing or not in the house format."""


class DiskFullError(AudioError, OSError):
    """The disk is full: ffmpeg or a file write found no space left on the device.

    Not a fault of the text or the recording: the same work succeeds once space is freed,
    so callers wait instead of failing. It is an :class:`OSError` with ``errno.ENOSPC``,
    so code that already treats a failed write as an ``OSError`` keeps working.
    """

    def __init__(self, message: str = "磁盘空间不足，无法写入音频文件") -> None:
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return str(self.strerror)
