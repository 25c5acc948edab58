"""Live microphone cloning (``rtclone mic``): listen, enrol, then speak typed text in that voice.

The audio source is any iterable of float32 mono blocks at 16 kHz: :func:`microphone_source`
(sounddevice, extra ``mic``; a PulseAudio null-sink monitor works as ``device``) or
:func:`wav_source` (a file, so tests and demos run without hardware). webrtcvad keeps only
voiced 30 ms frames; an enrolment meter reports the seconds of voiced speech and how stable the
server's embedding of it has become (cosine between successive embeddings). Once there is enough
stable speech the voice is enrolled on the server and each typed line is spoken back.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .errors import BackendUnavailableError, SilentAudioError, TextError

SAMPLE_RATE = 16000
FRAME = 480  # 30 ms at 16 kHz: the webrtcvad frame


def wav_source(path: str | Path, block_ms: int = 30, realtime: bool = False) -> Iterator[np.ndarray]:
    """Blocks of a recorded file (any format ``load_audio`` reads), optionally paced in real time."""
    from .audio import load_audio

    wav = load_audio(path)  # (N,) float32 16 kHz
    step = SAMPLE_RATE * block_ms // 1000
    for i in range(0, len(wav), step):
        if realtime:
            time.sleep(step / SAMPLE_RATE)
        yield wav[i : i + step]


def microphone_source(device: Any = None, block_ms: int = 30, max_seconds: float = 60.0) -> Iterator[np.ndarray]:
    """Blocks from an input device via sounddevice (16 kHz mono), for at most ``max_seconds``."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError(
            f"microphone capture needs sounddevice and PortAudio (pip install 'rtclone[mic]'): {exc}"
        ) from None
    blocks: queue.Queue[np.ndarray] = queue.Queue()

    def callback(indata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        blocks.put(indata[:, 0].copy())

    step = SAMPLE_RATE * block_ms // 1000
    with sd.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32", blocksize=step, device=device,
                        callback=callback):  # fmt: skip
        got = 0
        while got < max_seconds * SAMPLE_RATE:
            block = blocks.get(timeout=5.0)
            got += len(block)
            yield block


class VadGate:
    """webrtcvad on 30 ms frames; keeps voiced frames plus ``hangover`` frames after each.

    A frame quieter than ``min_dbfs`` never counts as voiced (webrtcvad alone takes steady
    low-level noise, e.g. a microphone's hiss, for speech).
    """

    def __init__(self, mode: int = 2, hangover: int = 5, min_dbfs: float = -50.0) -> None:
        self.mode, self.hangover, self.min_dbfs = mode, hangover, min_dbfs
        self._rest = np.zeros(0, np.float32)
        self._since_voiced = hangover + 1
        self.frames_seen = 0
        self.frames_kept = 0

    def push(self, block: np.ndarray) -> list[np.ndarray]:
        """Feed a block; returns the 30 ms frames it completed that are kept."""
        from .audio_vad import voice_flags

        buf = np.concatenate([self._rest, np.asarray(block, dtype=np.float32)])
        n = len(buf) // FRAME
        self._rest = buf[n * FRAME :]
        if n == 0:
            return []
        frames = buf[: n * FRAME].reshape(n, FRAME)  # (n, 480)
        flags = voice_flags(frames.reshape(-1), SAMPLE_RATE, 30, self.mode)  # (n,)
        rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))  # (n,)
        flags &= 20 * np.log10(rms + 1e-12) > self.min_dbfs
        kept = []
        for frame, voiced in zip(frames, flags):
            self._since_voiced = 0 if voiced else self._since_voiced + 1
            if self._since_voiced <= self.hangover:
                kept.append(frame)
        self.frames_seen += n
        self.frames_kept += len(kept)
        return kept


@dataclass(frozen=True)
class MeterState:
    """The live enrolment meter."""

    voiced_s: float  # seconds of voiced speech kept so far
    heard_s: float  # seconds of audio listened to
    stability: float | None  # cosine similarity of the last two embeddings (None before two)
    embeddings: int  # embeddings computed so far
    ready: bool  # enough stable speech to enrol

    def bar(self, target_s: float, width: int = 20) -> str:
        """A one-line text meter for terminals."""
        filled = int(min(1.0, self.voiced_s / target_s) * width)
        stab = "  -  " if self.stability is None else f"{self.stability:.3f}"
        return f"[{'#' * filled}{'.' * (width - filled)}] voiced {self.voiced_s:4.1f} s  stability {stab}"


@dataclass
class MicResult:
    """What one live cloning session did."""

    voice_id: str
    voiced_s: float
    meter: list[MeterState] = field(default_factory=list)
    said: list[Any] = field(default_factory=list)  # SayResult per typed line


async def live_clone(
    client: Any,
    source: Iterable[np.ndarray],
    texts: Iterable[str],
    *,
    name: str = "microphone",
    min_voiced_s: float = 5.0,
    max_voiced_s: float = 20.0,
    stability_target: float = 0.97,
    embed_every_s: float = 1.0,
    on_meter: Callable[[MeterState], None] | None = None,
    on_chunk: Callable[[np.ndarray], Any] | None = None,
    gate: VadGate | None = None,
) -> MicResult:
    """Listen to ``source`` until there is enough stable voiced speech, enrol it on the server
    through ``client`` (:class:`rtclone.client.Client`), then speak each of ``texts`` in it."""
    gate = gate or VadGate()
    blocks = iter(source)
    kept: list[np.ndarray] = []
    heard = 0
    previous, stability, n_emb, next_embed = None, None, 0, embed_every_s
    meter: list[MeterState] = []
    while True:
        block = await asyncio.to_thread(next, blocks, None)  # a device read may block
        if block is None:
            break
        heard += len(block)
        kept += gate.push(block)
        voiced_s = len(kept) * FRAME / SAMPLE_RATE
        if voiced_s >= next_embed:
            next_embed += embed_every_s
            emb = await client.embed(np.concatenate(kept))
            if previous is not None:
                stability = float(np.dot(emb, previous) / (np.linalg.norm(emb) * np.linalg.norm(previous) + 1e-12))
            previous, n_emb = emb, n_emb + 1
        ready = voiced_s >= max_voiced_s or (
            voiced_s >= min_voiced_s and stability is not None and stability >= stability_target
        )
        state = MeterState(round(voiced_s, 3), round(heard / SAMPLE_RATE, 3), stability, n_emb, ready)
        if not meter or state != meter[-1]:
            meter.append(state)
            if on_meter is not None:
                on_meter(state)
        if ready:
            break
    voiced_s = len(kept) * FRAME / SAMPLE_RATE
    if voiced_s < min(1.0, min_voiced_s):
        raise SilentAudioError(f"heard only {voiced_s:.1f} s of speech in {heard / SAMPLE_RATE:.1f} s of audio")
    info = await client.enrol(np.concatenate(kept), name)
    result = MicResult(info["voice_id"], voiced_s, meter)
    lines = iter(texts)
    while True:
        line = await asyncio.to_thread(next, lines, None)  # typed lines may come from a terminal
        if line is None:
            break
        if line.strip():
            result.said.append(await client.say(line.strip(), voice_id=result.voice_id, on_chunk=on_chunk))
    return result


def _stdin_lines() -> Iterator[str]:
    print("type a line and press Enter to hear it (an empty line or Ctrl-D ends)", file=sys.stderr)
    for line in sys.stdin:
        if not line.strip():
            return
        yield line


def mic_main(
    server: str,
    text: str | None = None,
    source: str | None = None,
    name: str = "microphone",
    min_voiced_s: float = 5.0,
    max_seconds: float = 60.0,
    output: str | None = None,
    play: bool = True,
    token: str | None = None,
    as_json: bool = False,
    device: Any = None,
) -> dict[str, Any]:
    """``rtclone mic``: enrol from the microphone (or the ``source`` file), then speak ``text``
    (or each line typed on stdin) through ``server``; returns the figures for the CLI."""
    from .client import Client, Player

    audio_in = wav_source(source) if source else microphone_source(device, max_seconds=max_seconds)
    texts = [text] if text is not None else _stdin_lines()
    show = not as_json and sys.stderr.isatty()

    def on_meter(state: MeterState) -> None:
        if show:
            print("\r" + state.bar(min_voiced_s), end="\n" if state.ready else "", file=sys.stderr, flush=True)

    async def run() -> MicResult:
        player = Player() if play else None
        try:
            async with await Client.connect(server, token=token) as client:
                return await live_clone(client, audio_in, texts, name=name, min_voiced_s=min_voiced_s,
                                        on_meter=on_meter, on_chunk=player.feed if player else None)  # fmt: skip
        finally:
            if player is not None:
                player.finish()

    result = asyncio.run(run())
    if not result.said and text is not None:
        raise TextError("nothing was said")
    out: dict[str, Any] = {
        "message": f"enrolled {result.voice_id} from {result.voiced_s:.1f} s of speech",
        "voice_id": result.voice_id,
        "voiced_s": result.voiced_s,
        "stability": result.meter[-1].stability if result.meter else None,
        "lines": [{"ttfa_s": r.ttfa_s, "rtf": r.rtf, "audio_s": r.audio_s} for r in result.said],
    }
    if output and result.said:
        from .audio import save_wav

        save_wav(output, np.concatenate([r.audio for r in result.said]), result.said[0].sample_rate)
        out["output"] = str(output)
    return out
