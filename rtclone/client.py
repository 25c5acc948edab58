"""Streaming client of the rtclone server (``rtclone say``) and a small jitter-buffered player.

``await say("ws://127.0.0.1:8765", "Hello", voice_id=...)`` streams one utterance and returns a
:class:`SayResult`; :class:`Client` keeps one connection open for several requests. Errors the
server reports come back as the matching typed error of :mod:`rtclone.errors` (unknown codes
as ServerError); a connection failure is a ServerError, a wrong token an AuthError.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import io
import itertools
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterable, Callable, Iterable

import numpy as np

from . import errors
from .errors import AuthError, BackendUnavailableError, ProtocolError, RtcloneError, ServerError
from .serve.protocol import PROTOCOL_VERSION, SAMPLE_RATE, decode_pcm16

UPLOAD_FRAME = 256 * 1024  # bytes per binary frame when uploading audio
AudioInput = str | Path | bytes | np.ndarray
OnChunk = Callable[[np.ndarray], Any]


def _error_classes() -> dict[str, type[RtcloneError]]:
    found: dict[str, type[RtcloneError]] = {}
    stack = [RtcloneError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return found


def remote_error(msg: dict[str, Any]) -> RtcloneError:
    """The typed error for a server ``error`` message (ServerError for codes this client lacks)."""
    cls = _error_classes().get(str(msg.get("code")), ServerError)
    if cls is RtcloneError:
        cls = ServerError
    exc = cls(f"server: {msg.get('message', '')}")
    exc.remote_code = msg.get("code")  # type: ignore[attr-defined]
    return exc


def wav_bytes(wav: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """Float mono audio → the bytes of a PCM16 wav file."""
    import soundfile as sf

    from .audio import pcm16_bytes  # lazy: rtclone.audio imports torch

    buf = io.BytesIO()
    sf.write(buf, np.frombuffer(pcm16_bytes(wav), dtype="<i2"), int(sr), format="WAV", subtype="PCM_16")
    return buf.getvalue()


def audio_payload(audio: AudioInput, sr: int = SAMPLE_RATE) -> bytes:
    """What to upload: file bytes as they are (any format the server decodes), arrays as wav."""
    if isinstance(audio, np.ndarray):
        return wav_bytes(audio, sr)
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return bytes(audio)
    try:
        return Path(audio).read_bytes()
    except OSError as exc:
        raise errors.AudioDecodeError(f"{audio}: cannot read ({exc.strerror})") from exc


@dataclass
class SayResult:
    """One streamed utterance."""

    audio: np.ndarray  # (N,) float32 at sample_rate
    sample_rate: int
    ttfa_s: float  # client side: request sent → first audio frame received
    elapsed_s: float  # client side: request sent → "done" received
    rtf: float | None  # server side: compute time / audio time
    chunks: int  # binary frames received
    server: dict[str, Any] = field(default_factory=dict)  # the server's "done" message

    @property
    def audio_s(self) -> float:
        return len(self.audio) / self.sample_rate


class Client:
    """One WebSocket connection to an rtclone server (use ``async with await Client.connect(...)``)."""

    def __init__(self, ws: Any, welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.welcome = welcome
        self.sample_rate = int(welcome.get("sample_rate", SAMPLE_RATE))
        self._ids = itertools.count(1)

    @classmethod
    async def connect(cls, server: str, token: str | None = None, open_timeout: float = 10.0) -> "Client":
        """Open a connection and read the server's ``welcome``."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            ws = await connect(server, additional_headers=headers, max_size=None, open_timeout=open_timeout)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401:
                raise AuthError(f"{server}: the server wants a (different) token") from None
            raise ServerError(f"{server}: HTTP {status} instead of a WebSocket") from None
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise ServerError(f"cannot connect to {server}: {exc}") from None
        client = cls(ws, {})
        welcome = await client._recv_json()
        if welcome.get("type") != "welcome" or welcome.get("protocol") != PROTOCOL_VERSION:
            await ws.close()
            raise ProtocolError(f"{server} does not speak rtclone protocol v{PROTOCOL_VERSION}")
        client.welcome, client.sample_rate = welcome, int(welcome["sample_rate"])
        return client

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ---- plumbing ---------------------------------------------------------------------------------
    def _next_id(self) -> str:
        return f"r{next(self._ids)}"

    async def send(self, kind: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"v": PROTOCOL_VERSION, "type": kind, **fields}))

    async def _recv(self) -> str | bytes:
        from websockets.exceptions import ConnectionClosed

        try:
            return await self.ws.recv()
        except ConnectionClosed as exc:
            raise ServerError(f"the server closed the connection ({exc})") from None

    async def _recv_json(self) -> dict[str, Any]:
        frame = await self._recv()
        if isinstance(frame, bytes):
            raise ProtocolError("expected a control message, got a binary frame")
        return json.loads(frame)

    async def _reply(self, rid: str, *kinds: str) -> dict[str, Any]:
        """The next message answering ``rid`` (stale audio/messages of older requests are skipped)."""
        while True:
            frame = await self._recv()
            if isinstance(frame, bytes):
                continue
            msg = json.loads(frame)
            if msg.get("id") not in (rid, None):
                continue
            if msg.get("type") == "error":
                raise remote_error(msg)
            if msg.get("type") in kinds:
                return msg

    async def _upload(self, data: bytes) -> None:
        for i in range(0, len(data), UPLOAD_FRAME):
            await self.ws.send(data[i : i + UPLOAD_FRAME])

    # ---- voices -----------------------------------------------------------------------------------
    async def enrol(self, audio: AudioInput, name: str = "voice") -> dict[str, Any]:
        """Upload reference audio → the ``enrolled`` message (``voice_id``, ``duration_s``, ...)."""
        data, rid = audio_payload(audio), self._next_id()
        await self.send("enrol", id=rid, name=name, size=len(data))
        await self._upload(data)
        return await self._reply(rid, "enrolled")

    async def embed(self, audio: AudioInput) -> np.ndarray:
        """The server engine's embedding of ``audio`` (nothing stored)."""
        data, rid = audio_payload(audio), self._next_id()
        await self.send("embed", id=rid, size=len(data))
        await self._upload(data)
        return np.asarray((await self._reply(rid, "embedding"))["embedding"], dtype=np.float32)

    async def list_voices(self) -> list[dict[str, Any]]:
        rid = self._next_id()
        await self.send("list_voices", id=rid)
        return (await self._reply(rid, "voices"))["voices"]

    async def delete_voice(self, voice_id: str) -> None:
        rid = self._next_id()
        await self.send("delete_voice", id=rid, voice_id=voice_id)
        await self._reply(rid, "deleted")

    # ---- synthesis --------------------------------------------------------------------------------
    async def say(
        self,
        text: str | Iterable[str] | AsyncIterable[str],
        voice_id: str | None = None,
        reference: AudioInput | None = None,
        options: dict[str, Any] | None = None,
        on_chunk: OnChunk | None = None,
    ) -> SayResult:
        """Stream one utterance. ``text`` may be a string or an (async) iterable of text pieces,
        sent incrementally (``text`` messages, then ``end``) while audio already comes back."""
        if (voice_id is None) == (reference is None):
            raise ProtocolError("say() needs exactly one of voice_id and reference")
        rid = self._next_id()
        msg: dict[str, Any] = {"id": rid, "options": options or {}}
        msg.update({"voice_id": voice_id} if voice_id is not None else {})
        payload = audio_payload(reference) if reference is not None else None
        if payload is not None:
            msg["reference"] = {"size": len(payload)}
        incremental = not isinstance(text, str)
        msg.update({"incremental": True} if incremental else {"text": text})
        t0 = time.perf_counter()
        await self.send("synth", **msg)
        if payload is not None:
            await self._upload(payload)
        feeder = asyncio.ensure_future(self._feed_text(rid, text)) if incremental else None
        try:
            return await self._collect(rid, t0, on_chunk)
        finally:
            if feeder is not None:
                feeder.cancel()

    async def _feed_text(self, rid: str, pieces: Iterable[str] | AsyncIterable[str]) -> None:
        if isinstance(pieces, AsyncIterable):
            async for piece in pieces:
                await self.send("text", id=rid, text=piece)
        else:
            for piece in pieces:
                await self.send("text", id=rid, text=piece)
        await self.send("end", id=rid)

    async def _collect(self, rid: str, t0: float, on_chunk: OnChunk | None) -> SayResult:
        chunks: list[np.ndarray] = []
        ttfa, started = None, False
        while True:
            frame = await self._recv()
            if isinstance(frame, bytes):
                if not started:
                    continue  # audio of a stream this request replaced
                pcm = decode_pcm16(frame)
                if ttfa is None:
                    ttfa = time.perf_counter() - t0
                chunks.append(pcm)
                if on_chunk is not None:
                    result = on_chunk(pcm)
                    if inspect.isawaitable(result):
                        await result
                continue
            msg = json.loads(frame)
            if msg.get("id") != rid:
                continue
            kind = msg.get("type")
            if kind == "error":
                raise remote_error(msg)
            if kind == "start":
                started = True
            elif kind == "cancelled":
                raise ServerError("server: the stream was cancelled")
            elif kind == "done":
                audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
                elapsed = time.perf_counter() - t0
                return SayResult(audio, self.sample_rate, ttfa if ttfa is not None else elapsed, elapsed,
                                 msg.get("rtf"), len(chunks), msg)  # fmt: skip

    async def cancel(self, request_id: str | None = None) -> None:
        """Ask the server to stop the running stream (barge-in); does not wait for the answer."""
        await self.send("cancel", **({"id": request_id} if request_id else {}))


async def say(
    server: str,
    text: str | Iterable[str] | AsyncIterable[str],
    voice_id: str | None = None,
    reference: AudioInput | None = None,
    options: dict[str, Any] | None = None,
    on_chunk: OnChunk | None = None,
    token: str | None = None,
) -> SayResult:
    """Connect to ``server`` (``ws://HOST:PORT``), stream one utterance, disconnect."""
    if reference is not None:
        reference = audio_payload(reference)  # a missing file fails before connecting
    async with await Client.connect(server, token=token) as client:
        return await client.say(text, voice_id=voice_id, reference=reference, options=options, on_chunk=on_chunk)


async def enrol(server: str, audio_path_or_bytes: AudioInput, name: str, token: str | None = None) -> str:
    """Enrol a voice on ``server`` from reference audio (a path, file bytes or an array) → voice_id."""
    async with await Client.connect(server, token=token) as client:
        return (await client.enrol(audio_path_or_bytes, name))["voice_id"]


# ---- playback -------------------------------------------------------------------------------------
class JitterBuffer:
    """Chunks in, fixed-size blocks out; playback starts once ``prebuffer`` samples are queued.

    An empty buffer before the end is an underrun (silence is played and counted).
    Thread-safe: the network side pushes, the audio callback reads.
    """

    def __init__(self, prebuffer: int) -> None:
        self.prebuffer = prebuffer
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._buffered = 0
        self._lock = threading.Lock()
        self.started = False
        self.ended = False
        self.underruns = 0
        self.drained = threading.Event()

    def push(self, chunk: np.ndarray) -> None:
        with self._lock:
            self._chunks.append(np.asarray(chunk, dtype=np.float32))
            self._buffered += len(chunk)

    def end(self) -> None:
        with self._lock:
            self.ended = True
            if self._buffered == 0:
                self.drained.set()

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples (zeros where there is nothing to play)."""
        out = np.zeros(n, dtype=np.float32)
        with self._lock:
            if not self.started:
                if self._buffered < self.prebuffer and not self.ended:
                    return out
                self.started = True
            filled = 0
            while filled < n and self._chunks:
                head = self._chunks[0]
                take = min(n - filled, len(head))
                out[filled : filled + take] = head[:take]
                filled += take
                if take == len(head):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = head[take:]
            self._buffered -= filled
            if filled < n:
                if self.ended:
                    self.drained.set()
                else:
                    self.underruns += 1
        return out


class Player:
    """Plays streamed chunks gaplessly on the default output device (sounddevice, extra ``mic``)."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, jitter_ms: float = 120.0, device: Any = None,
                 blocksize: int = 320) -> None:  # fmt: skip
        try:
            import sounddevice as sd
        except (ImportError, OSError) as exc:
            raise BackendUnavailableError(
                f"audio playback needs sounddevice and PortAudio (pip install 'rtclone[mic]'): {exc}"
            ) from None
        self.buffer = JitterBuffer(int(sample_rate * jitter_ms / 1000))

        def callback(outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
            outdata[:, 0] = self.buffer.read(frames)

        self.stream = sd.OutputStream(samplerate=sample_rate, channels=1, dtype="float32", blocksize=blocksize,
                                      device=device, callback=callback)  # fmt: skip
        self.stream.start()

    def feed(self, chunk: np.ndarray) -> None:
        self.buffer.push(chunk)

    def finish(self, timeout: float = 60.0) -> None:
        """Wait until everything pushed has been played, then close the device."""
        self.buffer.end()
        self.buffer.drained.wait(timeout)
        self.stream.stop()
        self.stream.close()


# ---- `rtclone say` --------------------------------------------------------------------------------
def say_main(
    server: str,
    text: str | None,
    voice: str | None = None,
    ref: str | None = None,
    output: str | None = None,
    play: bool = False,
    as_json: bool = False,
    token: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``rtclone say``: speak ``text`` (or each stdin line when None) through ``server``.

    Writes the concatenated audio to ``output`` (wav) and/or plays it as it arrives; prints TTFA
    and RTF per line on stderr (unless ``as_json``) and returns the figures for the CLI.
    """
    lines = [text] if text is not None else [ln.strip() for ln in sys.stdin if ln.strip()]
    if not lines:
        raise errors.TextError("no text given (--text or lines on stdin)")
    reference = Path(ref).read_bytes() if ref else None

    async def run() -> list[SayResult]:
        player = Player() if play else None
        results = []
        try:
            async with await Client.connect(server, token=token) as client:
                for line in lines:
                    r = await client.say(line, voice_id=voice, reference=reference, options=options,
                                         on_chunk=player.feed if player else None)  # fmt: skip
                    results.append(r)
                    if not as_json and len(lines) > 1:
                        print(f"{line[:40]!r}: TTFA {r.ttfa_s * 1000:.0f} ms, RTF {r.rtf}", file=sys.stderr)
        finally:
            if player is not None:
                player.finish()
        return results

    results = asyncio.run(run())
    from .audio import save_wav  # lazy: rtclone.audio imports torch

    audio = np.concatenate([r.audio for r in results])
    sr = results[0].sample_rate
    if output:
        save_wav(output, audio, sr)
    audio_s = len(audio) / sr
    compute = sum((r.rtf or 0.0) * r.audio_s for r in results)
    out: dict[str, Any] = {
        "message": f"{audio_s:.2f} s of audio" + (f" written to {output}" if output else ""),
        "ttfa_s": results[0].ttfa_s,
        "rtf": compute / audio_s if audio_s else None,
        "audio_s": audio_s,
        "sample_rate": sr,
        "lines": [{"ttfa_s": r.ttfa_s, "rtf": r.rtf, "audio_s": r.audio_s, "elapsed_s": r.elapsed_s} for r in results],
    }
    if output:
        out["output"] = str(output)
    return out
