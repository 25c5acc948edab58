"""Live microphone cloning driven end to end by a wav file (no audio hardware)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from conftest import make_speech
from fakes import FakeEngine, fake_audio, run
from rtclone.audio import load_audio
from rtclone.client import Client, wav_bytes
from rtclone.errors import SilentAudioError
from rtclone.mic import FRAME, VadGate, live_clone, mic_main, wav_source
from rtclone.serve.server import running_server

SR = 16000


def noise(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 1e-3).astype(np.float32)


def active_seconds(wav: np.ndarray, floor_db: float = -45.0) -> float:
    """Seconds of 30 ms frames louder than ``floor_db`` dBFS (an energy reference for the VAD)."""
    frames = wav[: len(wav) // FRAME * FRAME].reshape(-1, FRAME)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    return float((20 * np.log10(rms + 1e-12) > floor_db).sum() * FRAME / SR)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """Noise, speech, noise, speech, noise (as a microphone would hear it), as a wav file."""
    a = make_speech("The quick brown fox jumps over the lazy dog.", voice="slt")
    b = make_speech("Please call Stella and ask her to bring these things.", voice="slt")
    wav = np.concatenate([noise(1.0, 1), a, noise(1.2, 2), b, noise(0.8, 3)])
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(path, wav, SR, subtype="PCM_16")
    return path, active_seconds(a) + active_seconds(b), (len(a) + len(b)) / SR


def test_vad_gate_keeps_the_speech_and_drops_the_noise(recording):
    path, active_s, speech_s = recording
    gate = VadGate()
    kept = [f for block in wav_source(path, block_ms=20) for f in gate.push(block)]  # blocks ≠ frames
    voiced_s = len(kept) * FRAME / SR
    print(f'voiced {voiced_s:.2f} s, active {active_s:.2f} s, speech {speech_s:.2f} s')
    assert 0.85 * active_s <= voiced_s <= speech_s + 2 * (gate.hangover + 1) * FRAME / SR
    assert gate.frames_seen == len(load_audio(path)) // FRAME
    assert gate.push(noise(0.3, 9)) == []  # the recording ended in noise: nothing more is kept


def test_live_clone_end_to_end_from_a_wav_source(recording, tmp_path):
    path, _, _ = recording
    engine = FakeEngine()
    meters = []

    async def main():
        async with running_server(engine, voices_dir=tmp_path / "v") as srv:
            async with await Client.connect(f"ws://127.0.0.1:{srv.port}") as client:
                result = await live_clone(client, wav_source(path), ["Hello there.", "", "Goodbye."],
                                          name="mic", min_voiced_s=3.0, stability_target=0.9,
                                          on_meter=meters.append)  # fmt: skip
            return result, srv.registry.get(result.voice_id)

    result, (info, emb) = run(main())
    # the enrolled embedding is the engine's embedding of exactly the voiced frames the gate kept
    gate = VadGate()
    kept = [f for block in wav_source(path) for f in gate.push(block)][: int(round(result.voiced_s * SR / FRAME))]
    expected = engine.embed(load_audio(wav_bytes(np.concatenate(kept))), SR)
    np.testing.assert_array_equal(emb, expected)
    assert info.name == "mic" and info.duration_s == pytest.approx(result.voiced_s, abs=1e-3)
    assert [r.audio.size for r in result.said] == [len(fake_audio(t, emb)) for t in ("Hello there.", "Goodbye.")]
    np.testing.assert_allclose(result.said[1].audio, fake_audio("Goodbye.", emb), atol=1.0 / 32767 + 1e-6)
    # the meter: voiced seconds only grow, one embedding per voiced second, ready at the end
    voiced = [m.voiced_s for m in meters]
    assert voiced == sorted(voiced) and meters[-1].ready and meters == result.meter
    assert meters[-1].embeddings == int(meters[-1].voiced_s // 1.0)
    assert meters[-1].voiced_s >= 3.0 and meters[-1].stability >= 0.9 or meters[-1].voiced_s >= 20.0
    assert "voiced" in meters[-1].bar(3.0) and meters[-1].bar(3.0).startswith("[" + "#" * 20)


def test_silence_only_is_a_clear_error_and_mic_main_writes_a_wav(recording, tmp_path):
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, noise(3.0, 4), SR, subtype="PCM_16")
    engine = FakeEngine()
    out = tmp_path / "said.wav"
    got = {}

    async def main():
        import asyncio

        async with running_server(engine, voices_dir=tmp_path / "v") as srv:
            url = f"ws://127.0.0.1:{srv.port}"
            with pytest.raises(SilentAudioError, match="heard only 0.0 s"):
                await asyncio.to_thread(mic_main, url, "hi", str(quiet), "q", 2.0, 60.0, None, False)
            got.update(await asyncio.to_thread(mic_main, url, "Testing one two.", str(recording[0]), "m", 2.0,
                                               60.0, str(out), False, None, True))  # fmt: skip
            return srv.registry.get(got["voice_id"])[1]

    emb = run(main())
    wav, sr = sf.read(out, dtype="float32")
    assert sr == SR and np.abs(wav - fake_audio("Testing one two.", emb)).max() <= 1.0 / 32767 + 1e-6
    assert got["voiced_s"] >= 2.0 and len(got["lines"]) == 1 and got["lines"][0]["ttfa_s"] > 0
