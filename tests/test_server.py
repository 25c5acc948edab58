"""The WebSocket server against the deterministic FakeEngine: protocol, limits, reliability."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from fakes import FakeEngine, fake_audio, run, voice_like
from rtclone.audio import load_audio
from rtclone.client import wav_bytes
from rtclone.errors import CheckpointError, OptionsError
from rtclone.serve.metrics import parse_metrics
from rtclone.serve.protocol import decode_pcm16
from rtclone.serve.server import ServerLimits, make_engine, running_server

TOL = 1.0 / 32767 + 1e-6  # one PCM16 step


class Raw:
    """A bare protocol client for tests."""

    def __init__(self, ws) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, port: int, path: str = "/") -> "Raw":
        ws = await connect(f"ws://127.0.0.1:{port}{path}", max_size=None)
        raw = cls(ws)
        raw.welcome = json.loads(await ws.recv())
        return raw

    async def send(self, **msg) -> None:
        await self.ws.send(json.dumps({"v": 1, **msg}))

    async def recv(self, timeout: float = 10.0):
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        return frame if isinstance(frame, bytes) else json.loads(frame)

    async def until(self, kind: str, timeout: float = 10.0):
        """Read up to a message of ``kind``; returns (message, audio received, messages seen)."""
        audio, seen = [], []
        while True:
            frame = await self.recv(timeout)
            if isinstance(frame, bytes):
                audio.append(decode_pcm16(frame))
                continue
            seen.append(frame)
            if frame["type"] == kind:
                return frame, (np.concatenate(audio) if audio else np.zeros(0, np.float32)), seen

    async def close(self) -> None:
        await self.ws.close()


async def enrol(raw: Raw, wav: np.ndarray, name: str = "v") -> dict:
    data = wav_bytes(wav)
    await raw.send(type="enrol", id="e", name=name, size=len(data))
    await raw.ws.send(data)
    msg, _, _ = await raw.until("enrolled")
    return msg


async def settle(engine: FakeEngine, srv, connections: int = 0, timeout: float = 5.0) -> None:
    """Wait until no engine generator and no stream is running."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = srv.metrics
        if engine.active == 0 and m.streams_in_flight == 0 and engine.closed == engine.started and m.connections == connections:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"stream resources not freed: active={engine.active} in_flight={srv.metrics.streams_in_flight}")


def http_get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_http_routes_and_readiness(tmp_path):
    engine = FakeEngine()

    async def main():
        async with running_server(None, voices_dir=tmp_path) as srv:
            port = srv.port
            assert (await asyncio.to_thread(http_get, port, "/healthz"))[0] == 200
            assert (await asyncio.to_thread(http_get, port, "/readyz"))[0] == 503
            raw = await Raw.open(port)
            assert raw.welcome["ready"] is False
            await raw.send(type="synth", id="s", voice_id="v_0000000000000000", text="hi")
            err, _, _ = await raw.until("error")
            assert err["code"] == "busy" and "loading" in err["message"]
            await srv.load_engine(lambda: engine)
            assert (await asyncio.to_thread(http_get, port, "/readyz"))[0] == 200
            status, ctype, page = await asyncio.to_thread(http_get, port, "/")
            assert status == 200 and ctype.startswith("text/html") and "worklet.js" in (await asyncio.to_thread(http_get, port, "/app.js"))[2]
            assert (await asyncio.to_thread(http_get, port, "/nope"))[0] == 404
            status, ctype, text = await asyncio.to_thread(http_get, port, "/metrics")
            assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
            m = parse_metrics(text)
            assert m["rtclone_ready"] == 1 and m["rtclone_connections"] == 1
            assert m['rtclone_errors_total{code="busy"}'] == 1
            await raw.close()

    run(main())


def test_enrol_then_stream_matches_the_engine(tmp_path):
    engine = FakeEngine(chunk_s=0.1, seconds_per_char=0.04)
    text = "Hello world, this is a streaming test."

    async def main():
        async with running_server(engine, voices_dir=tmp_path, limits=ServerLimits(progress_every_s=0.3)) as srv:
            raw = await Raw.open(srv.port)
            assert raw.welcome["protocol"] == 1 and raw.welcome["sample_rate"] == 16000
            ref = voice_like(2.0, 150.0)
            info = await enrol(raw, ref, "alice")
            assert info["name"] == "alice" and info["duration_s"] == pytest.approx(2.0) and info["dim"] == 256
            expected_emb = engine.embed(load_audio(wav_bytes(ref)), 16000)
            _, stored = srv.registry.get(info["voice_id"])
            np.testing.assert_array_equal(stored, expected_emb)

            await raw.send(type="synth", id="s1", voice_id=info["voice_id"], text=text, options={"seed": 3})
            done, audio, seen = await raw.until("done")
            start = seen[0]
            assert start["type"] == "start" and start["sample_rate"] == 16000 and start["format"] == "pcm_s16le"
            ref_audio = fake_audio(text, expected_emb, seconds_per_char=0.04, seed=3)
            assert audio.shape == ref_audio.shape
            assert np.abs(audio - ref_audio).max() <= TOL
            progress = [m for m in seen if m["type"] == "progress"]
            assert len(progress) == int(len(ref_audio) / 16000 / 0.3)
            assert all(b["samples"] > a["samples"] for a, b in zip(progress, progress[1:]))
            assert done["samples"] == len(ref_audio) and done["chunks"] == int(np.ceil(len(ref_audio) / 1600))
            assert 0 < done["ttfa_s"] <= done["elapsed_s"]
            assert done["rtf"] == pytest.approx(done["compute_s"] / done["audio_s"], rel=0.02, abs=1e-4)  # both rounded to 4 decimals
            m = parse_metrics(srv.metrics.render())
            assert m["rtclone_ttfa_seconds_count"] == 1 and m['rtclone_streams_total{outcome="done"}'] == 1
            assert m["rtclone_audio_seconds_total"] == pytest.approx(len(ref_audio) / 16000)
            await raw.close()

    run(main())


def test_inline_reference_and_incremental_text(tmp_path):
    engine = FakeEngine()

    async def main():
        async with running_server(engine, voices_dir=tmp_path) as srv:
            raw = await Raw.open(srv.port)
            ref = voice_like(1.5, 240.0, seed=2)
            data = wav_bytes(ref)
            emb = engine.embed(load_audio(data), 16000)
            await raw.send(type="synth", id="a", reference={"size": len(data)}, incremental=True)
            for part in (data[:1000], data[1000:]):
                await raw.ws.send(part)
            await raw.send(type="text", id="a", text="Hello there. How")
            await raw.send(type="text", id="a", text=" are you")
            await raw.send(type="flush", id="a")
            await raw.send(type="text", id="a", text="Bye now")
            await raw.send(type="end", id="a")
            done, audio, _ = await raw.until("done")
            assert engine.texts == ["Hello there.", "How are you", "Bye now"]
            expected = np.concatenate([fake_audio(t, emb) for t in engine.texts])
            assert done["segments"] == 3 and np.abs(audio - expected).max() <= TOL
            assert len(srv.registry) == 0  # an inline reference is not stored
            await raw.close()

    run(main())


def test_voice_file_uploads_enrol_and_clone_with_the_stored_embedding(tmp_path):
    """An upload that is a voice file (``rtclone embed``'s) is not decoded as audio: enrol stores its unit
    embedding (duration 0), an inline reference speaks with it; a bad one is a typed error and the session goes on."""
    from rtclone.voicefile import encode_embedding

    engine = FakeEngine()
    emb = engine.embed(voice_like(1.5, 200.0, seed=4), 16000)
    voice = encode_embedding(2.0 * emb, {"source": "me.wav"})  # stored at any length: unit length after upload

    async def main():
        async with running_server(engine, voices_dir=tmp_path) as srv:
            raw = await Raw.open(srv.port)
            await raw.send(type="enrol", id="e", name="me", size=len(voice))
            await raw.ws.send(voice)
            info, _, _ = await raw.until("enrolled")
            _, stored = srv.registry.get(info["voice_id"])
            assert info["duration_s"] == 0 and info["dim"] == 256
            np.testing.assert_allclose(stored, emb, atol=1e-6)
            await raw.send(type="synth", id="a", reference={"size": len(voice)}, text="Hello there.", options={"seed": 2})
            await raw.ws.send(voice)
            _, audio, _ = await raw.until("done")
            assert np.abs(audio - fake_audio("Hello there.", emb, seed=2)).max() <= TOL
            for bad, why in ((encode_embedding(np.ones(8, np.float32)), "shape"), (voice[:12], "truncated"),
                             (encode_embedding(np.zeros(256, np.float32)), "zero")):
                await raw.send(type="embed", id="b", size=len(bad))
                await raw.ws.send(bad)
                err, _, _ = await raw.until("error")
                assert err["id"] == "b" and why in err["message"]
            await raw.send(type="embed", id="c", size=len(voice))
            await raw.ws.send(voice)
            got, _, _ = await raw.until("embedding")
            np.testing.assert_allclose(got["embedding"], emb, atol=1e-6)
            await raw.close()

    run(main())


def test_barge_in_and_cancel_free_the_stream(tmp_path):
    engine = FakeEngine(chunk_delay_s=0.03, chunk_s=0.05)

    async def main():
        async with running_server(engine, voices_dir=tmp_path) as srv:
            raw = await Raw.open(srv.port)
            vid = (await enrol(raw, voice_like()))["voice_id"]
            await raw.send(type="synth", id="long", voice_id=vid, text="x" * 200)
            assert (await raw.recv())["type"] == "start"
            assert isinstance(await raw.recv(), bytes)
            await raw.send(type="synth", id="next", voice_id=vid, text="short")  # barge-in
            cancelled, _, seen = await raw.until("cancelled")
            assert cancelled["id"] == "long" and cancelled["samples"] > 0
            done, audio, seen = await raw.until("done")
            assert [m["id"] for m in seen if m["type"] == "start"] == ["next"] and done["id"] == "next"
            assert len(audio) == len(fake_audio("short", np.zeros(256)))
            await raw.send(type="synth", id="c", voice_id=vid, text="y" * 200)
            await raw.until("start")
            await raw.send(type="cancel", id="c")
            msg, _, _ = await raw.until("cancelled")
            assert msg["id"] == "c"
            await settle(engine, srv, connections=1)
            assert srv.metrics.streams["cancelled"] == 2 and srv.metrics.streams["done"] == 1
            await raw.send(type="ping", id="p")
            assert (await raw.until("pong"))[0]["id"] == "p"
            await raw.close()

    run(main())


def test_typed_errors_keep_the_connection_open(tmp_path):
    engine = FakeEngine()
    limits = ServerLimits(max_text_chars=50, max_reference_s=3.0, max_upload_bytes=200_000)

    async def main():
        async with running_server(engine, voices_dir=tmp_path, limits=limits) as srv:
            raw = await Raw.open(srv.port)
            vid = (await enrol(raw, voice_like()))["voice_id"]
            silent, long_ref = wav_bytes(np.zeros(16000, np.float32)), wav_bytes(voice_like(4.0))
            cases = [
                (["{not json"], "protocol_error"),
                ([json.dumps([1, 2])], "protocol_error"),
                ([json.dumps({"v": 2, "type": "ping"})], "protocol_error"),
                ([json.dumps({"v": 1, "type": "launch"})], "protocol_error"),
                ([json.dumps({"v": 1, "type": "synth", "voice_id": vid})], "protocol_error"),
                ([b"\x00\xffgarbage"], "protocol_error"),
                ([json.dumps({"v": 1, "type": "text", "text": "orphan"})], "protocol_error"),
                ([json.dumps({"v": 1, "type": "synth", "voice_id": "v_ffffffffffffffff", "text": "a"})], "unknown_voice"),
                ([json.dumps({"v": 1, "type": "synth", "voice_id": vid, "text": "a", "options": {"seed": -1}})], "bad_options"),
                ([json.dumps({"v": 1, "type": "synth", "voice_id": vid, "text": "a", "options": {"speed": 2}})], "bad_options"),
                ([json.dumps({"v": 1, "type": "synth", "voice_id": vid, "text": "   "})], "bad_text"),
                ([json.dumps({"v": 1, "type": "synth", "voice_id": vid, "text": "a" * 51})], "limit_exceeded"),
                ([json.dumps({"v": 1, "type": "enrol", "size": 10}), b"0123456789"], "audio_decode"),
                ([json.dumps({"v": 1, "type": "enrol", "size": len(silent)}), silent], "silent_audio"),
                ([json.dumps({"v": 1, "type": "enrol", "size": len(long_ref)}), long_ref], "limit_exceeded"),
                ([json.dumps({"v": 1, "type": "enrol", "size": 300_000})], "limit_exceeded"),
                ([json.dumps({"v": 1, "type": "enrol", "size": 4}), b"123456"], "protocol_error"),
                ([json.dumps({"v": 1, "type": "delete_voice", "voice_id": "v_ffffffffffffffff"})], "unknown_voice"),
            ]
            for frames, code in cases:
                for f in frames:
                    await raw.ws.send(f)
                err, _, _ = await raw.until("error")
                assert err["code"] == code, (frames[0][:60], err)
            await raw.send(type="synth", id="ok", voice_id=vid, text="still fine")
            done, audio, _ = await raw.until("done")
            assert len(audio) == done["samples"] > 0
            assert sum(srv.metrics.errors.values()) == len(cases)
            await raw.close()

    run(main())


def test_engine_failure_mid_stream_is_a_typed_error(tmp_path):
    engine = FakeEngine(fail_after_chunks=2)

    async def main():
        async with running_server(engine, voices_dir=tmp_path) as srv:
            raw = await Raw.open(srv.port)
            vid = (await enrol(raw, voice_like()))["voice_id"]
            await raw.send(type="synth", id="f", voice_id=vid, text="x" * 100)
            err, audio, _ = await raw.until("error")
            assert err["code"] == "synthesis_failed" and err["id"] == "f" and len(audio) == 2 * 1600
            await settle(engine, srv, connections=1)
            await raw.send(type="ping")
            await raw.until("pong")
            await raw.close()

    run(main())


def test_busy_after_the_queue_is_full(tmp_path):
    engine = FakeEngine(chunk_delay_s=0.05)
    limits = ServerLimits(max_streams=1, max_queue=1)

    async def main():
        async with running_server(engine, voices_dir=tmp_path, limits=limits) as srv:
            a, b, c = [await Raw.open(srv.port) for _ in range(3)]
            vid = (await enrol(a, voice_like()))["voice_id"]
            await a.send(type="synth", id="a", voice_id=vid, text="x" * 20)
            await a.until("start")
            await b.send(type="synth", id="b", voice_id=vid, text="x" * 20)
            queued, _, _ = await b.until("queued")
            assert queued["position"] == 1
            await c.send(type="synth", id="c", voice_id=vid, text="x" * 20)
            busy, _, _ = await c.until("error")
            assert busy["code"] == "busy"
            (done_a, _, _), (done_b, _, seen_b) = await asyncio.gather(a.until("done"), b.until("done"))
            assert done_b["queued_s"] > 0.1 and [m["type"] for m in seen_b][:1] == ["start"]
            assert engine.max_active == 1
            for r in (a, b, c):
                await r.close()

    run(main())


def test_oversized_frame_closes_only_that_connection(tmp_path):
    engine = FakeEngine()

    async def main():
        async with running_server(engine, voices_dir=tmp_path, limits=ServerLimits(max_message_bytes=4096)) as srv:
            bad, good = await Raw.open(srv.port), await Raw.open(srv.port)
            await bad.ws.send(b"\x00" * 10_000)
            with pytest.raises(ConnectionClosed) as info:
                await bad.recv()
            assert info.value.rcvd.code == 1009
            await good.send(type="ping", id="alive")
            assert (await good.until("pong"))[0]["id"] == "alive"
            await good.close()

    run(main())


@pytest.mark.slow
def test_vanishing_clients_connect_storm_and_cancel_storm(tmp_path):
    engine = FakeEngine(chunk_delay_s=0.02, chunk_s=0.05)

    async def main():
        async with running_server(engine, voices_dir=tmp_path, limits=ServerLimits(max_streams=3)) as srv:
            port = srv.port
            keeper = await Raw.open(port)
            vid = (await enrol(keeper, voice_like()))["voice_id"]
            _, emb = srv.registry.get(vid)
            # A steady stream that must finish intact while the storms go on.
            text = "z" * 60
            await keeper.send(type="synth", id="keep", voice_id=vid, text=text)
            steady = asyncio.ensure_future(keeper.until("done", timeout=20))

            # 1) a client that vanishes mid-stream (TCP reset, no close frame)
            gone = await Raw.open(port)
            await gone.send(type="synth", id="g", voice_id=vid, text="q" * 300)
            await gone.until("start")
            await gone.recv()
            gone.ws.transport.abort()

            # 2) 100 rapid connect/disconnects, half of them dropped without a close handshake
            for i in range(100):
                r = await Raw.open(port)
                if i % 2:
                    r.ws.transport.abort()
                else:
                    await r.close()

            # 3) a cancel storm: synth/cancel pairs as fast as possible on one connection
            storm = await Raw.open(port)
            for i in range(40):
                await storm.send(type="synth", id=f"s{i}", voice_id=vid, text="w" * 100)
                await storm.send(type="cancel")
            await storm.send(type="ping", id="end")
            await storm.until("pong")

            done, audio, _ = await steady
            assert np.abs(audio - fake_audio(text, emb)).max() <= TOL
            await storm.close()
            await keeper.close()
            await settle(engine, srv)
            assert srv.metrics.streams_queued == 0
            assert engine.max_active <= 3
            assert (await asyncio.to_thread(http_get, port, "/healthz"))[0] == 200

    run(main(), timeout=60)


def test_token_auth(tmp_path):
    from rtclone.client import Client
    from rtclone.errors import AuthError

    async def main():
        async with running_server(FakeEngine(), voices_dir=tmp_path, token="s3cret") as srv:
            url = f"ws://127.0.0.1:{srv.port}"
            with pytest.raises(AuthError):
                await Client.connect(url)
            with pytest.raises(AuthError):
                await Client.connect(url, token="wrong")
            async with await Client.connect(url, token="s3cret") as c:
                assert await c.list_voices() == []
            raw = await Raw.open(srv.port, "/?token=s3cret")
            assert raw.welcome["type"] == "welcome"
            await raw.close()
            assert srv.metrics.errors["unauthorized"] == 2

    run(main())


def test_limits_are_validated_and_the_engine_hook(monkeypatch):
    with pytest.raises(OptionsError):
        ServerLimits(max_streams=0)
    with pytest.raises(OptionsError):
        ServerLimits(max_reference_s=0)
    import rtclone.pipeline as pipeline

    class Missing:
        @classmethod
        def from_default(cls, decoder_int8=None):
            raise FileNotFoundError("no default models here")

    monkeypatch.setattr(pipeline, "Cloner", Missing, raising=False)
    with pytest.raises(CheckpointError, match="default models"):
        make_engine(None)
    fake = FakeEngine()

    class Present:
        @classmethod
        def from_default(cls, decoder_int8=None):
            assert decoder_int8 is None  # make_engine(None): the card's choice
            return fake

    monkeypatch.setattr(pipeline, "Cloner", Present, raising=False)
    assert make_engine(None) is fake


SERVE_SCRIPT = """
import sys, asyncio
sys.path.insert(0, {tests!r})
from fakes import FakeEngine
from rtclone.serve.server import serve, ServerLimits
import rtclone.serve.server as s
orig = s.RtcloneServer.start
async def start(self, host, port):
    out = await orig(self, host, port)
    print(out.port, flush=True)
    return out
s.RtcloneServer.start = start
asyncio.run(serve(FakeEngine(chunk_delay_s=0.05), port=0, voices_dir={voices!r},
                  limits=ServerLimits(shutdown_grace_s=10)))
print("clean exit", flush=True)
"""


@pytest.mark.slow
def test_sigterm_lets_running_streams_finish(tmp_path):
    script = SERVE_SCRIPT.format(tests=str(Path(__file__).parent), voices=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())

        async def main():
            raw = await Raw.open(port)
            vid = (await enrol(raw, voice_like()))["voice_id"]
            await raw.send(type="synth", id="t", voice_id=vid, text="x" * 40)
            await raw.until("start")
            os.kill(proc.pid, signal.SIGTERM)
            done, audio, _ = await raw.until("done")
            assert done["samples"] == len(audio) == int(0.8 * 16000)
            with pytest.raises(ConnectionClosed) as info:
                await raw.recv()
            assert info.value.rcvd.code == 1001

        run(main())
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read().strip() == "clean exit"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_reports_an_engine_that_fails_to_load(tmp_path):
    from rtclone.serve.server import serve

    def factory():
        raise CheckpointError("no models in /nowhere")

    with pytest.raises(CheckpointError, match="/nowhere"):
        run(serve(None, port=0, voices_dir=tmp_path, engine_factory=factory), timeout=10)


def test_a_queued_stream_that_waits_too_long_gets_busy(tmp_path):
    engine = FakeEngine(chunk_delay_s=0.05)
    limits = ServerLimits(max_streams=1, max_queue=4, queue_timeout_s=0.15)

    async def main():
        async with running_server(engine, voices_dir=tmp_path, limits=limits) as srv:
            a, b = await Raw.open(srv.port), await Raw.open(srv.port)
            vid = (await enrol(a, voice_like()))["voice_id"]
            await a.send(type="synth", id="a", voice_id=vid, text="x" * 40)  # 0.8 s of audio, ~0.4 s of work
            await a.until("start")
            t0 = time.perf_counter()
            await b.send(type="synth", id="b", voice_id=vid, text="hi")
            busy, _, seen = await b.until("error")
            assert busy["code"] == "busy" and [m["type"] for m in seen] == ["queued", "error"]
            assert 0.15 <= time.perf_counter() - t0 < 0.4
            await a.until("done")
            assert srv.metrics.streams_queued == 0 and srv.slots.waiting == 0
            await b.send(type="synth", id="b2", voice_id=vid, text="hi")  # the slot is free again
            assert (await b.until("done"))[0]["samples"] == len(fake_audio("hi", np.zeros(256)))
            for r in (a, b):
                await r.close()

    run(main())


def test_an_idle_incremental_stream_does_not_hold_a_slot(tmp_path):
    engine = FakeEngine()

    async def main():
        async with running_server(engine, voices_dir=tmp_path, limits=ServerLimits(max_streams=1)) as srv:
            a, b = await Raw.open(srv.port), await Raw.open(srv.port)
            vid = (await enrol(a, voice_like()))["voice_id"]
            await a.send(type="synth", id="typing", voice_id=vid, incremental=True)  # no text yet
            await b.send(type="synth", id="b", voice_id=vid, text="meanwhile")
            done_b, _, seen_b = await b.until("done")
            assert [m["type"] for m in seen_b] == ["start", "done"] and done_b["queued_s"] < 0.05
            await a.send(type="text", id="typing", text="Now I type")
            await a.send(type="end", id="typing")
            done_a, audio, seen_a = await a.until("done")
            assert [m["type"] for m in seen_a] == ["start", "done"] and engine.texts == ["meanwhile", "Now I type"]
            assert len(audio) == done_a["samples"] == len(fake_audio("Now I type", np.zeros(256)))
            for r in (a, b):
                await r.close()

    run(main())


def test_an_unexpected_engine_exception_is_internal_and_not_leaked(tmp_path, caplog):
    engine = FakeEngine()

    def broken_embed(audio, sr):
        raise RuntimeError("secret stack detail")

    async def main():
        async with running_server(engine, voices_dir=tmp_path) as srv:
            raw = await Raw.open(srv.port)
            engine.embed = broken_embed
            data = wav_bytes(voice_like())
            await raw.send(type="enrol", id="e1", size=len(data))
            await raw.ws.send(data)
            err, _, _ = await raw.until("error")
            assert err == {"v": 1, "type": "error", "id": "e1", "code": "internal", "message": "internal server error"}
            await raw.send(type="ping", id="p")
            assert (await raw.until("pong"))[0]["id"] == "p"
            await raw.close()

    run(main())
    assert "secret stack detail" in caplog.text  # in the server log only
