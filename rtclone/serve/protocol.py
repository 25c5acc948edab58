"""The rtclone wire protocol, version 1 (see docs/PROTOCOL.md).

Control messages are JSON objects in WebSocket text frames, each with ``"v": 1`` and a
``"type"``; audio travels in binary frames: raw PCM, signed 16-bit little-endian, mono, 16 kHz
(server → client), or an uploaded audio file announced by a JSON message (client → server).
This module only parses, validates and builds messages; it does no I/O.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import ProtocolError, RtcloneError

PROTOCOL_VERSION = 1
AUDIO_FORMAT = "pcm_s16le"  # server → client audio frames
SAMPLE_RATE = 16000
MAX_ID_CHARS = 64

# Client → server messages: field → (accepted JSON types, required). "v", "type" and "id" are
# accepted on every message.
_STR, _INT, _BOOL, _OBJ = (str,), (int,), (bool,), (dict,)
CLIENT_MESSAGES: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "ping": {},
    "list_voices": {},
    "delete_voice": {"voice_id": (_STR, True)},
    # Reference audio (any common format) follows in binary frames totalling ``size`` bytes.
    "enrol": {"name": (_STR, False), "size": (_INT, True)},
    "embed": {"size": (_INT, True)},
    # One synthesis stream. ``reference`` ({"size": N}) means an inline reference follows in
    # binary frames. With ``incremental`` the text comes in "text" messages, "flush", "end".
    "synth": {
        "text": (_STR, False),
        "voice_id": (_STR, False),
        "reference": (_OBJ, False),
        "options": (_OBJ, False),
        "incremental": (_BOOL, False),
    },
    "text": {"text": (_STR, True)},
    "flush": {},
    "end": {},
    "cancel": {},
}

SERVER_MESSAGES = (
    "welcome", "pong", "voices", "deleted", "enrolled", "embedding", "queued", "start",
    "progress", "done", "cancelled", "error",
)  # fmt: skip


def _check_size(msg: dict[str, Any], key: str = "size") -> None:
    size = msg.get(key)
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ProtocolError(f"'{key}' must be a positive integer number of bytes, got {size!r}")


def parse_message(data: str | bytes) -> dict[str, Any]:
    """A text frame → a validated client message dict. Raises ProtocolError naming the problem."""
    try:
        msg = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a control message must be a JSON object")
    v = msg.get("v")
    if v != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {v!r}; this server speaks v={PROTOCOL_VERSION}")
    kind = msg.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_MESSAGES:
        raise ProtocolError(f"unknown message type {kind!r}; known: {sorted(CLIENT_MESSAGES)}")
    mid = msg.get("id")
    if mid is not None and (not isinstance(mid, str) or len(mid) > MAX_ID_CHARS):
        raise ProtocolError(f"'id' must be a string of at most {MAX_ID_CHARS} characters")
    schema = CLIENT_MESSAGES[kind]
    unknown = sorted(set(msg) - set(schema) - {"v", "type", "id"})
    if unknown:
        raise ProtocolError(f"unknown field(s) {unknown} in a {kind!r} message")
    for field, (types, required) in schema.items():
        if field not in msg:
            if required:
                raise ProtocolError(f"a {kind!r} message needs '{field}'")
            continue
        value = msg[field]
        if not isinstance(value, types) or (types == _INT and isinstance(value, bool)):
            raise ProtocolError(f"'{field}' of a {kind!r} message must be {types[0].__name__}")
    if "size" in schema:
        _check_size(msg)
    if kind == "synth":
        _check_synth(msg)
    return msg


def _check_synth(msg: dict[str, Any]) -> None:
    has_voice, ref = "voice_id" in msg, msg.get("reference")
    if has_voice == (ref is not None):
        raise ProtocolError("a 'synth' message needs exactly one of 'voice_id' and 'reference'")
    if ref is not None:
        if set(ref) - {"size"}:
            raise ProtocolError("'reference' must be {\"size\": <bytes>}")
        _check_size(ref)
    if not msg.get("incremental") and "text" not in msg:
        raise ProtocolError("a 'synth' message needs 'text' (or \"incremental\": true)")


def message(kind: str, **fields: Any) -> str:
    """A server message as a JSON text frame (fields that are None are left out)."""
    if kind not in SERVER_MESSAGES:
        raise ValueError(f"not a server message type: {kind!r}")
    body = {"v": PROTOCOL_VERSION, "type": kind}
    body.update({k: v for k, v in fields.items() if v is not None})
    return json.dumps(body)


def error_message(exc: BaseException, request_id: str | None = None, fatal: bool = False) -> str:
    """A typed ``error`` message: the error class's ``code`` and its text (internal errors hidden)."""
    if isinstance(exc, RtcloneError):
        code, text = exc.code, str(exc) or exc.__class__.__name__
    else:
        code, text = "internal", "internal server error"
    return message("error", id=request_id, code=code, message=text, fatal=fatal or None)


def decode_pcm16(data: bytes) -> np.ndarray:
    """Little-endian PCM16 bytes → float32 in [-1, 1) (the inverse of ``audio.pcm16_bytes``)."""
    if len(data) % 2:
        raise ProtocolError(f"a PCM16 frame must hold an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767.0


def request_id_of(frame: str) -> str | None:
    """The ``id`` of a text frame that failed validation, when it has a usable one (else None)."""
    try:
        msg = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    mid = msg.get("id") if isinstance(msg, dict) else None
    return mid if isinstance(mid, str) and len(mid) <= MAX_ID_CHARS else None
