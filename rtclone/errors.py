"""Typed errors raised by the rtclone library.

The library only raises these; the CLI turns them into exit codes and messages and the server
turns them into typed error messages with a ``code``. Each class carries a stable ``code``
string (used on the wire and in ``--json`` output) and a CLI exit status.
"""

from __future__ import annotations


class RtcloneError(Exception):
    """Base class of every error rtclone raises on purpose."""

    code = "error"
    exit_status = 1


# ---- input data -------------------------------------------------------------------------------
class AudioError(RtcloneError):
    """Audio that cannot be used: unreadable, corrupt, empty, non-finite, wrong shape or dtype."""

    code = "bad_audio"
    exit_status = 3


class AudioDecodeError(AudioError):
    """A file or byte string that no decoder could read (corrupt, truncated, unknown format)."""

    code = "audio_decode"


class SampleRateError(AudioError):
    """A sample rate outside the supported range (8-48 kHz)."""

    code = "bad_sample_rate"


class SilentAudioError(AudioError):
    """Audio with no usable speech (all silence, or too little voiced audio after VAD)."""

    code = "silent_audio"


class AudioTooShortError(AudioError):
    """Reference audio shorter than the minimum needed for a stable embedding."""

    code = "audio_too_short"


class TextError(RtcloneError):
    """Text that cannot be synthesised (empty, whitespace only, or nothing left after cleaning)."""

    code = "bad_text"
    exit_status = 3


class InputShapeError(RtcloneError):
    """A tensor/array handed to a model with the wrong shape, size, dtype or non-finite values."""

    code = "bad_input"
    exit_status = 3


class OptionsError(RtcloneError):
    """An invalid run-time option (out of range, inconsistent with another option)."""

    code = "bad_options"
    exit_status = 2


# ---- models and files -------------------------------------------------------------------------
class CheckpointError(RtcloneError):
    """A checkpoint that is missing, unreadable, of an unknown layout, or of the wrong kind."""

    code = "bad_checkpoint"
    exit_status = 4


class ArtifactError(CheckpointError):
    """An exported artifact (ONNX/TorchScript) that is missing or mismatched (version, dims)."""

    code = "bad_artifact"


class FileFormatError(RtcloneError):
    """A versioned rtclone file (e.g. a voice embedding) with a bad magic, version or header."""

    code = "bad_file"
    exit_status = 4


class FileSystemError(RtcloneError):
    """A file that cannot be read or written: a missing folder, no permission, a full disk."""

    code = "file_system"
    exit_status = 4


class BackendUnavailableError(RtcloneError):
    """A requested compute backend (cpu-native, triton, onnxruntime) is not available here."""

    code = "backend_unavailable"
    exit_status = 5


# ---- inference --------------------------------------------------------------------------------
class SynthesisError(RtcloneError):
    """Synthesis failed at run time."""

    code = "synthesis_failed"
    exit_status = 6


class AttentionFailureError(SynthesisError):
    """The synthesizer's attention got stuck or skipped ahead (alignment failure)."""

    code = "attention_failure"


class MaxLengthError(SynthesisError):
    """The decoder reached its max-length guard without predicting a stop."""

    code = "max_length"


# ---- service ----------------------------------------------------------------------------------
class VoiceNotFoundError(RtcloneError):
    """An unknown voice id."""

    code = "unknown_voice"
    exit_status = 3


class ProtocolError(RtcloneError):
    """A malformed or unknown wire message."""

    code = "protocol_error"
    exit_status = 7


class LimitExceededError(RtcloneError):
    """A request over a configured limit (message size, text length, reference duration)."""

    code = "limit_exceeded"
    exit_status = 7


class BusyError(RtcloneError):
    """The server has no free stream slot and its queue is full."""

    code = "busy"
    exit_status = 7


class AuthError(RtcloneError):
    """Missing or wrong token."""

    code = "unauthorized"
    exit_status = 7


class ServerError(RtcloneError):
    """An error reported by a remote rtclone server (client side)."""

    code = "server_error"
    exit_status = 7
