"""A small deterministic stand-in for the cloning engine (the ``VoiceEngine`` protocol).

``FakeEngine.embed`` maps audio to a 256-d unit vector through a fixed, seeded projection of its
log band energies (so two stretches of the same voice give close embeddings and a silent or
too-short clip raises the real typed errors). ``FakeEngine.stream`` yields a few chunks of a sine
whose pitch depends on the embedding and the text, with a configurable delay per chunk, and
counts how many generators are running / were closed so tests can check what a stream held.
"""

from __future__ import annotations

import threading
import time
import zlib
from typing import Iterator

import numpy as np

from rtclone.errors import AudioTooShortError, InputShapeError, SilentAudioError, SynthesisError, TextError
from rtclone.pipeline import SynthesisOptions

DIM = 256
N_BANDS = 24


def fake_pitch(embedding: np.ndarray, text: str) -> float:
    """The sine frequency (Hz) FakeEngine uses for this embedding and text."""
    e = np.asarray(embedding, dtype=np.float64)
    voice = float(np.tanh(e[:16].sum()) * 0.5 + 0.5)  # [0, 1]
    return 120.0 + 200.0 * voice + float(zlib.crc32(text.encode()) % 40)


def fake_duration(text: str, seconds_per_char: float) -> float:
    """Seconds of audio FakeEngine makes for ``text``."""
    return max(0.3, seconds_per_char * len(text.strip()))


class FakeEngine:
    """Deterministic VoiceEngine for tests and the loopback benchmark (no model, no torch)."""

    sample_rate = 16000

    def __init__(
        self,
        chunk_s: float = 0.1,
        chunk_delay_s: float = 0.0,
        first_delay_s: float = 0.0,
        seconds_per_char: float = 0.02,
        embed_delay_s: float = 0.0,
        fail_after_chunks: int | None = None,
    ) -> None:
        self.chunk_s = chunk_s  # audio per yielded chunk (seconds)
        self.chunk_delay_s = chunk_delay_s  # wall time spent per chunk ("compute")
        self.first_delay_s = first_delay_s  # extra wall time before the first chunk
        self.seconds_per_char = seconds_per_char  # audio length per character of text
        self.embed_delay_s = embed_delay_s
        self.fail_after_chunks = fail_after_chunks  # raise SynthesisError after this many chunks
        rng = np.random.default_rng(1234)
        self._proj = rng.standard_normal((DIM, N_BANDS)).astype(np.float64)  # (256, bands)
        self._lock = threading.Lock()
        self.active = 0  # generators started and not yet finished/closed
        self.max_active = 0
        self.started = 0
        self.closed = 0  # generators that ended (normally, by error or by close())
        self.texts: list[str] = []

    # ---- embedding ------------------------------------------------------------------------------
    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Audio → unit (256,) vector from log band energies; typed errors for bad input."""
        wav = np.asarray(audio)
        if wav.ndim != 1 or wav.dtype.kind != "f":
            raise InputShapeError(f"audio must be 1-D float, got {wav.shape} {wav.dtype}")
        if not np.all(np.isfinite(wav)):
            raise InputShapeError("audio holds non-finite values")
        if self.embed_delay_s:
            time.sleep(self.embed_delay_s)
        if len(wav) < 0.5 * sr:
            raise AudioTooShortError(f"reference audio is {len(wav) / sr:.2f} s, need at least 0.5 s")
        if float(np.sqrt(np.mean(wav.astype(np.float64) ** 2))) < 1e-3:
            raise SilentAudioError("reference audio is silent")
        n = 512
        frames = wav[: len(wav) // n * n].reshape(-1, n).astype(np.float64)  # (F, 512)
        spec = np.abs(np.fft.rfft(frames * np.hanning(n), axis=1)) ** 2  # (F, 257)
        bands = np.array_split(spec[:, 1:], N_BANDS, axis=1)
        feats = np.log(np.stack([b.sum(axis=1) for b in bands], axis=1) + 1e-8).mean(axis=0)  # (bands,)
        feats = feats - feats.mean()
        emb = self._proj @ feats  # (256,)
        return (emb / (np.linalg.norm(emb) + 1e-12)).astype(np.float32)

    # ---- synthesis ------------------------------------------------------------------------------
    def stream(
        self, text: str, embedding: np.ndarray, options: SynthesisOptions = SynthesisOptions()
    ) -> Iterator[np.ndarray]:
        """Validate eagerly, then return a generator of float32 sine chunks."""
        if not isinstance(text, str) or not text.strip():
            raise TextError("text is empty")
        if len(text) > options.max_chars:
            raise TextError(f"text has {len(text)} characters, more than max_chars={options.max_chars}")
        emb = np.asarray(embedding)
        if emb.shape != (DIM,) or not np.all(np.isfinite(emb)):
            raise InputShapeError(f"embedding must be a finite ({DIM},) vector, got {emb.shape}")
        return self._generate(text, emb, options)

    def _generate(self, text: str, emb: np.ndarray, options: SynthesisOptions) -> Iterator[np.ndarray]:
        sr = self.sample_rate
        f0 = fake_pitch(emb, text)
        total = int(round(fake_duration(text, self.seconds_per_char) * sr))
        step = max(1, int(round(self.chunk_s * sr)))
        with self._lock:
            self.active += 1
            self.started += 1
            self.max_active = max(self.max_active, self.active)
            self.texts.append(text)
        try:
            if self.first_delay_s:
                time.sleep(self.first_delay_s)
            for k, start in enumerate(range(0, total, step)):
                if self.fail_after_chunks is not None and k >= self.fail_after_chunks:
                    raise SynthesisError("fake failure")
                if self.chunk_delay_s:
                    time.sleep(self.chunk_delay_s)
                t = np.arange(start, min(start + step, total)) / sr
                yield (0.5 * np.sin(2 * np.pi * f0 * t + options.seed % 7)).astype(np.float32)
        finally:
            with self._lock:
                self.active -= 1
                self.closed += 1


def fake_audio(text: str, embedding: np.ndarray, seconds_per_char: float = 0.02, seed: int = 0) -> np.ndarray:
    """The whole utterance FakeEngine streams for ``text`` (reference for tests)."""
    sr = FakeEngine.sample_rate
    total = int(round(fake_duration(text, seconds_per_char) * sr))
    t = np.arange(total) / sr
    return (0.5 * np.sin(2 * np.pi * fake_pitch(embedding, text) * t + seed % 7)).astype(np.float32)


def voice_like(seconds: float = 2.0, f0: float = 180.0, seed: int = 0, sr: int = 16000) -> np.ndarray:
    """A harmonic, amplitude-modulated tone: enough "voice" for FakeEngine.embed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wav = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k for k in range(1, 6))
    wav *= 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 2.5 * t))
    return (0.2 * wav / np.abs(wav).max()).astype(np.float32)


def run(coro, timeout: float = 30.0):
    """Run a coroutine in a fresh event loop with an overall timeout (tests)."""
    import asyncio

    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())
