"""One WebSocket connection: uploads, voice commands and (at most) one synthesis stream at a time.

A new ``synth`` while a stream runs cancels it first (barge-in): the client gets ``cancelled``
for the old stream before ``start`` of the new one, and binary frames always belong to the most
recent ``start``. Engine work runs in the server's worker threads: the generator is advanced one
chunk per executor call, so the event loop never blocks and a cancelled stream stops after the
chunk in progress (its slot is freed once that chunk and the generator's close have finished).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from websockets.exceptions import ConnectionClosed

from ..errors import BusyError, LimitExceededError, ProtocolError, RtcloneError
from ..pipeline import SynthesisOptions
from .protocol import AUDIO_FORMAT, error_message, message, parse_message, request_id_of

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from .server import RtcloneServer

log = logging.getLogger("rtclone.serve")
_END = object()
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


@dataclass
class _Upload:
    """Binary frames being collected for an enrol / embed / inline reference."""

    kind: str
    msg: dict[str, Any]
    size: int
    parts: list[bytes] = field(default_factory=list)
    received: int = 0


@dataclass
class _Stream:
    """State of one synthesis stream."""

    request_id: str | None
    options: SynthesisOptions
    voice_id: str | None
    incremental: bool
    t_request: float
    segments: asyncio.Queue = field(default_factory=asyncio.Queue)
    embedding: np.ndarray | None = None
    pending_text: str = ""
    text_chars: int = 0
    ended: bool = False
    cancelled: bool = False
    samples: int = 0
    task: asyncio.Task | None = None


class Session:
    """Protocol state machine of one connection."""

    def __init__(self, server: "RtcloneServer", ws: "ServerConnection") -> None:
        self.server = server
        self.ws = ws
        self.limits = server.limits
        self.loop = asyncio.get_running_loop()
        self.upload: _Upload | None = None
        self.stream: _Stream | None = None

    # ---- sending ----------------------------------------------------------------------------------
    async def send(self, text_or_bytes: str | bytes) -> None:
        try:
            await self.ws.send(text_or_bytes)
        except ConnectionClosed:
            pass

    async def send_error(self, exc: BaseException, request_id: str | None) -> None:
        code = exc.code if isinstance(exc, RtcloneError) else "internal"
        self.server.metrics.errors[code] += 1
        if not isinstance(exc, RtcloneError):
            log.exception("internal error", exc_info=exc)
        await self.send(error_message(exc, request_id))

    # ---- main loop --------------------------------------------------------------------------------
    async def run(self) -> None:
        """Greet, then handle frames until the client goes away."""
        await self.send(self.server.welcome())
        async for frame in self.ws:
            request_id = None
            try:
                if isinstance(frame, bytes):
                    await self.on_binary(frame)
                else:
                    if self.upload is not None:  # a text frame in the middle of an upload aborts it
                        aborted, self.upload = self.upload, None
                        await self.send_error(ProtocolError("upload interrupted by a control message"), aborted.msg.get("id"))
                    msg = parse_message(frame)
                    request_id = msg.get("id")
                    await self.on_message(msg)
            except Exception as exc:  # noqa: BLE001 - typed errors go back as such, others as "internal"
                if request_id is None and isinstance(frame, str):
                    request_id = request_id_of(frame)  # so the client can match an invalid request's error
                await self.send_error(exc, request_id)

    async def close(self) -> None:
        """The connection is gone: abandon the upload and cancel the stream (no messages sent)."""
        self.upload = None
        if self.stream is not None and self.stream.task is not None and not self.stream.task.done():
            self.stream.cancelled = True
            self.stream.task.cancel()
            self.server.metrics.streams["cancelled"] += 1

    # ---- control messages -------------------------------------------------------------------------
    async def on_message(self, msg: dict[str, Any]) -> None:
        kind, rid = msg["type"], msg.get("id")
        if kind == "ping":
            await self.send(message("pong", id=rid))
        elif kind == "list_voices":
            voices = [v.to_json() for v in self.server.registry.list()]
            await self.send(message("voices", id=rid, voices=voices))
        elif kind == "delete_voice":
            await asyncio.to_thread(self.server.registry.delete, msg["voice_id"])
            await self.send(message("deleted", id=rid, voice_id=msg["voice_id"]))
        elif kind in ("enrol", "embed"):
            self.server.require_engine()
            self._start_upload(kind, msg, msg["size"])
        elif kind == "synth":
            await self.on_synth(msg)
        elif kind in ("text", "flush", "end"):
            self.on_text_input(msg)
        elif kind == "cancel":
            await self.cancel_stream(rid)

    def _start_upload(self, kind: str, msg: dict[str, Any], size: int) -> None:
        if size > self.limits.max_upload_bytes:
            raise LimitExceededError(f"upload of {size} bytes is over the limit of {self.limits.max_upload_bytes}")
        self.upload = _Upload(kind, msg, size)

    async def on_binary(self, frame: bytes) -> None:
        up = self.upload
        if up is None:
            raise ProtocolError("unexpected binary frame (no upload was announced)")
        up.parts.append(frame)
        up.received += len(frame)
        if up.received > up.size:
            self.upload = None
            raise ProtocolError(f"upload is larger than the announced {up.size} bytes")
        if up.received < up.size:
            return
        self.upload = None
        try:
            await self._finish_upload(up, b"".join(up.parts))
        except Exception as exc:  # noqa: BLE001 - reported with the upload's id
            if up.kind == "reference":
                self.server.metrics.streams["error"] += 1
            await self.send_error(exc, up.msg.get("id"))

    async def _finish_upload(self, up: _Upload, data: bytes) -> None:
        rid = up.msg.get("id")
        if up.kind == "reference":
            stream = self.stream
            assert stream is not None
            try:
                stream.embedding, _ = await self._embed_upload(data)
            except BaseException:
                if self.stream is stream:
                    self.stream = None
                raise
            if not stream.cancelled:
                stream.task = asyncio.create_task(self._run_stream(stream))
                self.server.track(stream.task)
            return
        emb, duration = await self._embed_upload(data)
        if up.kind == "embed":
            await self.send(message("embedding", id=rid, embedding=[float(x) for x in emb], duration_s=round(duration, 3)))
            return
        info = await asyncio.to_thread(self.server.registry.add, emb, up.msg.get("name") or "voice", duration)
        self.server.metrics.enrolments += 1
        await self.send(message("enrolled", id=rid, **info.to_json()))

    async def _embed_upload(self, data: bytes) -> tuple[np.ndarray, float]:
        """Decode uploaded audio (any common format) and embed it, in a worker thread; an upload that is a
        voice file (``rtclone embed``'s, or a ``.npy`` vector) gives its stored embedding (duration 0)."""
        engine = self.server.require_engine()
        max_s = self.limits.max_reference_s

        def work() -> tuple[np.ndarray, float]:
            from ..audio import load_audio  # lazy: rtclone.audio imports torch
            from ..voicefile import EMBEDDING_DIM, read_voice, unit_embedding

            stored = read_voice(data)
            if stored is not None:
                return unit_embedding(stored, EMBEDDING_DIM, "the uploaded voice file"), 0.0

            wav = load_audio(data, sr=engine.sample_rate)  # (N,) float32
            duration = len(wav) / engine.sample_rate
            if duration > max_s:
                raise LimitExceededError(f"reference audio is {duration:.1f} s, over the limit of {max_s:g} s")
            return np.asarray(engine.embed(wav, engine.sample_rate), dtype=np.float32), duration

        return await self.server.run_in_worker(work)

    # ---- synthesis --------------------------------------------------------------------------------
    async def on_synth(self, msg: dict[str, Any]) -> None:
        rid = msg.get("id")
        if self.stream is not None:  # barge-in: the new request replaces the running one
            await self.cancel_stream(None)
        self.server.require_engine()
        if self.server.draining:
            raise BusyError("the server is shutting down")
        options = SynthesisOptions.from_dict(msg.get("options"))
        stream = _Stream(rid, options, msg.get("voice_id"), bool(msg.get("incremental")), time.perf_counter())
        if "text" in msg:
            self._add_text(stream, msg["text"])
        if not stream.incremental:  # the whole text as one segment: the engine judges it
            stream.segments.put_nowait(stream.pending_text)
            self._queue_text(stream, "", end=True)
        if stream.voice_id is not None:
            _, stream.embedding = self.server.registry.get(stream.voice_id)
            self.stream = stream
            stream.task = asyncio.create_task(self._run_stream(stream))
            self.server.track(stream.task)
        else:
            self._start_upload("reference", msg, msg["reference"]["size"])
            self.stream = stream  # the task starts when the reference has arrived

    def _add_text(self, stream: _Stream, text: str) -> None:
        stream.text_chars += len(text)
        if stream.text_chars > self.limits.max_text_chars:
            raise LimitExceededError(f"text is over the limit of {self.limits.max_text_chars} characters")
        stream.pending_text += text

    def _queue_text(self, stream: _Stream, text: str, end: bool = False) -> None:
        stream.pending_text = ""
        if text.strip():
            stream.segments.put_nowait(text.strip())
        if end:
            stream.ended = True
            stream.segments.put_nowait(_END)

    def on_text_input(self, msg: dict[str, Any]) -> None:
        stream = self.stream
        if stream is None or not stream.incremental or stream.ended:
            raise ProtocolError(f"a {msg['type']!r} message needs an open incremental synth stream")
        if msg.get("id") not in (None, stream.request_id):
            raise ProtocolError(f"no open stream with id {msg.get('id')!r}")
        if msg["type"] == "text":
            self._add_text(stream, msg["text"])
            parts = _SENTENCE_END.split(stream.pending_text)
            if len(parts) > 1:  # whole sentences go now; the unfinished tail waits
                for sentence in parts[:-1]:
                    self._queue_text(stream, sentence)
                stream.pending_text = parts[-1]
        else:
            self._queue_text(stream, stream.pending_text, end=msg["type"] == "end")

    async def cancel_stream(self, request_id: str | None) -> None:
        """Stop the running stream (if any) and confirm with ``cancelled``; idempotent."""
        stream = self.stream
        if stream is not None and request_id not in (None, stream.request_id):
            raise ProtocolError(f"no stream with id {request_id!r} to cancel")
        self.stream = None
        if stream is None:
            await self.send(message("cancelled", id=request_id, samples=0))
            return
        if self.upload is not None and self.upload.kind == "reference":
            self.upload = None
        stream.cancelled = True
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()
        self.server.metrics.streams["cancelled"] += 1
        await self.send(message("cancelled", id=stream.request_id, samples=stream.samples))

    async def _send_stream(self, stream: _Stream, data: str | bytes) -> None:
        if not stream.cancelled:
            await self.send(data)

    async def _run_stream(self, stream: _Stream) -> None:
        """Acquire a slot, pull the engine's chunks in worker threads and send them."""
        server, metrics = self.server, self.server.metrics
        rid = stream.request_id

        async def on_queued(position: int) -> None:
            await self._send_stream(stream, message("queued", id=rid, position=position))

        try:
            first = await stream.segments.get()  # an incremental stream takes a slot once it has text
            t_wait = time.perf_counter()
            t_from = t_wait if stream.incremental else stream.t_request  # TTFA counts from here
            async with server.slots.slot(on_queued):
                queued_s = time.perf_counter() - t_wait
                await self._produce(stream, queued_s, first, t_from)
        except asyncio.CancelledError:
            return  # cancel_stream / close already answered and counted it
        except Exception as exc:  # noqa: BLE001 - every failure becomes a typed error message
            if not stream.cancelled:
                metrics.streams["error"] += 1
                await self.send_error(exc, rid)
        finally:
            if self.stream is stream:
                self.stream = None

    async def _produce(self, stream: _Stream, queued_s: float, first: Any, t_from: float) -> None:
        server, metrics, engine = self.server, self.server.metrics, self.server.require_engine()
        rid, sr = stream.request_id, engine.sample_rate
        from ..audio import pcm16_bytes  # lazy: rtclone.audio imports torch

        await self._send_stream(stream, message(
            "start", id=rid, sample_rate=sr, format=AUDIO_FORMAT, channels=1, voice_id=stream.voice_id,
        ))  # fmt: skip
        metrics.streams_in_flight += 1
        compute_s, chunks, segments, ttfa, next_progress = 0.0, 0, 0, None, self.limits.progress_every_s
        try:
            while True:
                text, first = (first, None) if first is not None else (await stream.segments.get(), None)
                if text is _END:
                    break
                segments += 1
                t = time.perf_counter()
                gen = await server.run_in_worker(engine.stream, text, stream.embedding, stream.options)
                compute_s += time.perf_counter() - t
                async with server.generator(gen) as pull:
                    while True:
                        t = time.perf_counter()
                        chunk = await pull()
                        compute_s += time.perf_counter() - t
                        if chunk is None:
                            break
                        if ttfa is None:
                            ttfa = time.perf_counter() - t_from
                            metrics.ttfa.observe(ttfa)
                        await self._send_stream(stream, pcm16_bytes(chunk))
                        stream.samples += len(chunk)
                        chunks += 1
                        if stream.samples / sr >= next_progress:
                            next_progress += self.limits.progress_every_s
                            await self._send_stream(stream, message(
                                "progress", id=rid, samples=stream.samples, audio_s=round(stream.samples / sr, 3),
                                chunks=chunks, segments=segments,
                                elapsed_s=round(time.perf_counter() - stream.t_request, 4),
                            ))  # fmt: skip
        finally:
            metrics.streams_in_flight -= 1
            metrics.audio_seconds += stream.samples / sr
        audio_s = stream.samples / sr
        rtf = compute_s / audio_s if audio_s > 0 else None
        if rtf is not None:
            metrics.rtf.observe(rtf)
        metrics.streams["done"] += 1
        await self._send_stream(stream, message(
            "done", id=rid, samples=stream.samples, audio_s=round(audio_s, 4), chunks=chunks, segments=segments,
            ttfa_s=None if ttfa is None else round(ttfa, 4), rtf=None if rtf is None else round(rtf, 4),
            compute_s=round(compute_s, 4), queued_s=round(queued_s, 4),
            elapsed_s=round(time.perf_counter() - stream.t_request, 4),
        ))  # fmt: skip

