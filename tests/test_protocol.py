"""Wire protocol v1: parsing, validation, server messages, PCM16 framing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rtclone.audio import pcm16_bytes
from rtclone.errors import BusyError, ProtocolError, VoiceNotFoundError
from rtclone.serve.protocol import CLIENT_MESSAGES, PROTOCOL_VERSION, decode_pcm16, error_message, message, parse_message


def msg(**fields) -> str:
    return json.dumps({"v": 1, **fields})


def test_valid_messages_round_trip():
    assert parse_message(msg(type="ping", id="a")) == {"v": 1, "type": "ping", "id": "a"}
    m = parse_message(msg(type="synth", voice_id="v_1", text="hi", options={"seed": 2}))
    assert m["text"] == "hi" and m["options"] == {"seed": 2}
    m = parse_message(msg(type="synth", reference={"size": 10}, incremental=True))
    assert m["reference"]["size"] == 10 and m["incremental"] is True
    assert parse_message(msg(type="enrol", name="x", size=5).encode())["size"] == 5  # bytes are fine too
    assert set(CLIENT_MESSAGES) >= {"enrol", "synth", "text", "flush", "end", "cancel", "list_voices", "delete_voice"}


@pytest.mark.parametrize(
    "raw, match",
    [
        ("{", "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
        ("[]", "JSON object"),
        (json.dumps({"type": "ping"}), "version None"),
        (json.dumps({"v": 2, "type": "ping"}), "version 2"),
        (msg(type="explode"), "unknown message type 'explode'"),
        (msg(type=3), "unknown message type 3"),
        (msg(type="ping", id=7), "'id'"),
        (msg(type="ping", id="x" * 65), "'id'"),
        (msg(type="ping", extra=1), r"unknown field\(s\) \['extra'\]"),
        (msg(type="enrol"), "needs 'size'"),
        (msg(type="enrol", size=0), "positive integer"),
        (msg(type="enrol", size=True), "must be int"),
        (msg(type="enrol", size="9"), "must be int"),
        (msg(type="delete_voice", voice_id=None), "must be str"),
        (msg(type="synth", text="hi"), "exactly one of"),
        (msg(type="synth", text="hi", voice_id="a", reference={"size": 3}), "exactly one of"),
        (msg(type="synth", voice_id="a"), "needs 'text'"),
        (msg(type="synth", voice_id="a", text="x", incremental="yes"), "must be bool"),
        (msg(type="synth", reference={"size": -1}, text="x"), "positive integer"),
        (msg(type="synth", reference={"size": 4, "url": "x"}, text="x"), "reference"),
        (msg(type="text"), "needs 'text'"),
    ],
)
def test_bad_messages_are_protocol_errors(raw, match):
    with pytest.raises(ProtocolError, match=match):
        parse_message(raw)


def test_server_messages_and_typed_errors():
    assert json.loads(message("pong", id="q", extra=None)) == {"v": PROTOCOL_VERSION, "type": "pong", "id": "q"}
    with pytest.raises(ValueError):
        message("not-a-type")
    e = json.loads(error_message(VoiceNotFoundError("no voice 'x'"), "r1"))
    assert e == {"v": 1, "type": "error", "id": "r1", "code": "unknown_voice", "message": "no voice 'x'"}
    assert json.loads(error_message(BusyError("full")))["code"] == "busy"
    internal = json.loads(error_message(KeyError("secret detail")))
    assert internal["code"] == "internal" and "secret" not in internal["message"]


def test_pcm16_frames_invert_the_audio_encoder():
    wav = np.random.default_rng(0).uniform(-1, 1, 999).astype(np.float32)
    data = pcm16_bytes(wav)
    assert len(data) == 2 * 999 and np.frombuffer(data, "<i2")[0] == round(wav[0] * 32767)
    back = decode_pcm16(data)
    assert back.dtype == np.float32 and np.abs(back - wav).max() <= 0.5 / 32767 + 1e-7
    with pytest.raises(ProtocolError, match="even"):
        decode_pcm16(b"\x00\x01\x02")
