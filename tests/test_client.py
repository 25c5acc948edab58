"""The streaming client, the jitter buffer / player and ``say_main``."""

from __future__ import annotations

import asyncio
import io
import sys
import types

import numpy as np
import pytest
import soundfile as sf

from fakes import FakeEngine, fake_audio, run, voice_like
from rtclone.client import Client, JitterBuffer, Player, enrol, remote_error, say, say_main
from rtclone.errors import (
    AudioDecodeError, BusyError, ServerError, SilentAudioError, TextError, VoiceNotFoundError,
)  # fmt: skip
from rtclone.serve.server import running_server

TOL = 1.0 / 32767 + 1e-6


def test_say_and_enrol_stream_the_engine_audio(tmp_path):
    engine = FakeEngine(chunk_delay_s=0.01)
    ref_path = tmp_path / "ref.flac"
    sf.write(ref_path, voice_like(2.0, 200.0), 16000, format="FLAC")  # any common format

    async def main():
        async with running_server(engine, voices_dir=tmp_path / "v") as srv:
            url = f"ws://127.0.0.1:{srv.port}"
            vid = await enrol(url, str(ref_path), "flac voice")
            _, emb = srv.registry.get(vid)
            np.testing.assert_array_equal(emb, engine.embed(sf.read(ref_path, dtype="float32")[0], 16000))
            seen = []
            r = await say(url, "Good morning.", voice_id=vid, options={"seed": 1}, on_chunk=seen.append)
            expected = fake_audio("Good morning.", emb, seed=1)
            assert np.abs(r.audio - expected).max() <= TOL and r.sample_rate == 16000
            assert len(seen) == r.chunks == int(np.ceil(len(expected) / 1600))
            assert 0 < r.ttfa_s <= r.elapsed_s and r.rtf == r.server["rtf"] > 0
            assert r.audio_s == pytest.approx(len(expected) / 16000)

            async with await Client.connect(url) as c:
                # inline reference (bytes) and incremental text from an async generator
                async def pieces():
                    for p in ("One. ", "Two", " three."):
                        yield p
                        await asyncio.sleep(0.01)

                r2 = await c.say(pieces(), reference=ref_path.read_bytes())
                assert engine.texts[-2:] == ["One.", "Two three."]
                assert np.abs(r2.audio - np.concatenate([fake_audio(t, emb) for t in ("One.", "Two three.")])).max() <= TOL
                np.testing.assert_allclose(await c.embed(ref_path), emb, atol=1e-6)
                assert [v["voice_id"] for v in await c.list_voices()] == [vid]
                with pytest.raises(VoiceNotFoundError, match="server: no voice"):
                    await c.say("x", voice_id="v_0123456789abcdef")
                with pytest.raises(SilentAudioError):
                    await c.enrol(np.zeros(16000, np.float32), "quiet")
                with pytest.raises(TextError):
                    await c.say("  ", voice_id=vid)
                await c.delete_voice(vid)
                assert await c.list_voices() == []
                r3 = await c.say("still connected", reference=voice_like(1.0))
                assert r3.audio.size == len(fake_audio("still connected", emb))

    run(main())


def test_connection_problems_are_typed():
    with pytest.raises(ServerError, match="cannot connect"):
        run(Client.connect("ws://127.0.0.1:9"))
    with pytest.raises(AudioDecodeError):
        run(say("ws://127.0.0.1:9", "x", reference="/nonexistent.wav"))
    e = remote_error({"type": "error", "code": "busy", "message": "full"})
    assert isinstance(e, BusyError) and str(e) == "server: full"
    e = remote_error({"type": "error", "code": "from_the_future", "message": "?"})
    assert type(e) is ServerError and e.remote_code == "from_the_future"


def test_jitter_buffer_waits_then_plays_gaplessly():
    jb = JitterBuffer(prebuffer=100)
    jb.push(np.arange(60, dtype=np.float32))
    assert not jb.read(40).any() and not jb.started  # still filling: silence, not an underrun
    jb.push(np.arange(60, 120, dtype=np.float32))
    out = np.concatenate([jb.read(50), jb.read(50)])
    np.testing.assert_array_equal(out, np.arange(100, dtype=np.float32))
    tail = jb.read(50)  # 20 left, then nothing: an underrun
    np.testing.assert_array_equal(tail[:20], np.arange(100, 120))
    assert not tail[20:].any()
    assert jb.underruns == 1 and not jb.drained.is_set()
    jb.push(np.ones(10, np.float32))
    jb.end()
    np.testing.assert_array_equal(jb.read(16), np.r_[np.ones(10), np.zeros(6)])
    assert jb.drained.is_set() and jb.underruns == 1


class FakeOutputStream:
    """Stands in for sounddevice.OutputStream: the test pulls blocks through the callback."""

    last = None

    def __init__(self, samplerate, channels, dtype, blocksize, device, callback):
        self.samplerate, self.blocksize, self.callback = samplerate, blocksize, callback
        self.played, self.closed = [], False
        FakeOutputStream.last = self

    def start(self):
        pass

    def pull(self, blocks):
        for _ in range(blocks):
            buf = np.zeros((self.blocksize, 1), np.float32)
            self.callback(buf, self.blocksize, None, None)
            self.played.append(buf[:, 0].copy())

    def stop(self):
        pass

    def close(self):
        self.closed = True


def test_player_feeds_the_device_through_the_jitter_buffer(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", types.SimpleNamespace(OutputStream=FakeOutputStream))
    player = Player(16000, jitter_ms=20, blocksize=160)  # 320 samples of jitter buffer
    dev = FakeOutputStream.last
    chunk = np.linspace(-0.5, 0.5, 400, dtype=np.float32)
    player.feed(chunk[:200])
    dev.pull(1)
    assert not dev.played[0].any()  # waiting for 320 samples
    player.feed(chunk[200:])
    dev.pull(3)
    played = np.concatenate(dev.played[1:])
    np.testing.assert_array_equal(played[:400], chunk)
    player.buffer.end()
    dev.pull(1)
    player.finish(timeout=1)
    assert dev.closed and player.buffer.drained.is_set()


def test_player_without_portaudio_is_a_clear_error(monkeypatch):
    from rtclone.errors import BackendUnavailableError

    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails
    with pytest.raises(BackendUnavailableError, match="rtclone\\[mic\\]"):
        Player()


def test_say_main_writes_a_wav_and_reads_stdin_lines(tmp_path, monkeypatch, capsys):
    engine = FakeEngine()
    ref = tmp_path / "ref.wav"
    sf.write(ref, voice_like(1.5, 130.0), 16000)
    out = tmp_path / "out.wav"
    result = {}

    async def main():
        async with running_server(engine, voices_dir=tmp_path / "v") as srv:
            url = f"ws://127.0.0.1:{srv.port}"
            vid = await enrol(url, str(ref), "r")
            monkeypatch.setattr(sys, "stdin", io.StringIO("First line.\n\nSecond line here.\n"))
            # say_main runs its own event loop: call it from a worker thread
            result.update(await asyncio.to_thread(say_main, url, None, vid, None, str(out), False, False))
            return srv.registry.get(vid)[1]

    emb = run(main())
    wav, sr = sf.read(out, dtype="float32")
    expected = np.concatenate([fake_audio("First line.", emb), fake_audio("Second line here.", emb)])
    assert sr == 16000 and np.abs(wav - expected).max() <= TOL
    assert len(result["lines"]) == 2 and result["audio_s"] == pytest.approx(len(expected) / 16000)
    assert result["ttfa_s"] == result["lines"][0]["ttfa_s"] > 0 and result["rtf"] > 0
    assert "TTFA" in capsys.readouterr().err
    with pytest.raises(TextError):
        monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
        say_main("ws://127.0.0.1:9", None, "v", None, None, False, True)
