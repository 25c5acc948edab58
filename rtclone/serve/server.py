"""The rtclone WebSocket server (``rtclone serve``): streaming synthesis, voices, HTTP probes.

One asyncio event loop handles every connection (:mod:`rtclone.serve.session`); engine work runs
in a bounded pool of worker threads. Concurrent streams share the vocoder: an engine that offers
``start_vocoder_batching`` (the Cloner, for a WaveRNN vocoder) runs their sample-loop blocks
stacked on one batching thread (:mod:`rtclone.vocoder_batch`) unless ``batch_vocoder=False``.
HTTP GET routes share the port: ``/`` (the browser page),
``/healthz``, ``/readyz`` (200 only once the engine is loaded) and ``/metrics`` (Prometheus).
The wire protocol is in docs/PROTOCOL.md and :mod:`rtclone.serve.protocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import importlib
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import parse_qs

import numpy as np
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .. import __version__
from ..errors import BusyError, CheckpointError, OptionsError, RtcloneError
from ..pipeline import VoiceEngine
from .metrics import CONTENT_TYPE, ServerMetrics
from .protocol import AUDIO_FORMAT, PROTOCOL_VERSION, message
from .session import Session
from .voices import VoiceRegistry

log = logging.getLogger("rtclone.serve")
WEB_DIR = Path(__file__).parent / "web"
STATIC = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript"),
          "/worklet.js": ("worklet.js", "text/javascript")}  # fmt: skip


def default_voices_dir() -> Path:
    """``$RTCLONE_VOICES``, else ``$XDG_DATA_HOME/rtclone/voices`` (``~/.local/share/...``)."""
    if os.environ.get("RTCLONE_VOICES"):
        return Path(os.environ["RTCLONE_VOICES"])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "rtclone" / "voices"


@dataclass(frozen=True)
class ServerLimits:
    """Server limits (validated here, in one place)."""

    max_message_bytes: int = 4 * 2**20  # largest WebSocket message accepted (bigger: close 1009)
    max_upload_bytes: int = 16 * 2**20  # largest announced audio upload (enrol/embed/reference)
    max_text_chars: int = 5000  # longest text of one synthesis stream (all chunks together)
    max_reference_s: float = 60.0  # longest reference audio after decoding
    max_streams: int = 4  # synthesis streams computed at once
    max_queue: int = 8  # streams that may wait for a slot; beyond that: "busy"
    queue_timeout_s: float = 30.0  # a queued stream that waits longer gets "busy"
    progress_every_s: float = 0.5  # a progress event per this much streamed audio
    shutdown_grace_s: float = 10.0  # on SIGTERM, running streams get this long to finish
    max_voices: int = 10_000  # voices the registry holds

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_upload_bytes", "max_text_chars", "max_streams", "max_voices"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise OptionsError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.max_queue, int) or self.max_queue < 0:
            raise OptionsError(f"max_queue must be a non-negative integer, got {self.max_queue!r}")
        for name in ("max_reference_s", "queue_timeout_s", "progress_every_s"):
            if not float(getattr(self, name)) > 0:
                raise OptionsError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not float(self.shutdown_grace_s) >= 0:
            raise OptionsError(f"shutdown_grace_s must be >= 0, got {self.shutdown_grace_s!r}")


def make_engine(models: str | None = None, decoder_int8: bool | None = None, warm: bool = False) -> VoiceEngine:
    """The engine ``rtclone serve`` uses: the shipped default models, or those in ``models``
    (a folder of checkpoints or of exported artifacts). Raises CheckpointError naming what is missing.
    ``decoder_int8`` (None: as the model folder's card says) sets ``Cloner.decoder_int8``; ``warm``: run
    ``warm_up`` on it before returning."""
    from ..pipeline import Cloner

    try:
        engine = Cloner.from_default(decoder_int8) if models is None else Cloner.from_dir(models, decoder_int8)
    except RtcloneError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"the models could not be loaded: {exc}") from exc
    if warm:
        warm_up(engine)
    return engine


def warm_up(engine: VoiceEngine) -> None:
    """One embedding and one short stream, so that the first request does not pay for lazy imports and
    first-call allocations (through a fresh synthesis worker the first embedding took 153 ms, later ones 22 ms).
    A failure here is logged, not raised: requests will report it."""
    sr = int(engine.sample_rate)
    t = np.arange(int(2.0 * sr)) / sr
    voiced = sum(np.sin(2 * np.pi * 140.0 * k * t) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t))
    try:
        emb = engine.embed((0.2 * voiced).astype(np.float32), sr)
        for _ in engine.stream("Warm up.", emb):
            pass
    except Exception:  # noqa: BLE001 - not fatal: the engine loaded
        log.warning("engine warm-up failed", exc_info=True)


class StreamSlots:
    """At most ``max_streams`` running streams, ``max_queue`` waiting, the rest get BusyError."""

    def __init__(self, limits: ServerLimits, metrics: ServerMetrics) -> None:
        self.limits, self.metrics = limits, metrics
        self._sem = asyncio.Semaphore(limits.max_streams)
        self.waiting = 0

    @contextlib.asynccontextmanager
    async def slot(self, on_queued: Callable[[int], Awaitable[None]] | None = None) -> AsyncIterator[None]:
        if self._sem.locked():
            if self.waiting >= self.limits.max_queue:
                raise BusyError(f"all {self.limits.max_streams} stream slots and {self.limits.max_queue} queue places are taken")
            self.waiting += 1
            self.metrics.streams_queued += 1
            try:
                if on_queued is not None:
                    await on_queued(self.waiting)
                async with asyncio.timeout(self.limits.queue_timeout_s):  # cancel-safe, unlike wait_for
                    await self._sem.acquire()
            except TimeoutError:
                raise BusyError(f"no stream slot became free within {self.limits.queue_timeout_s:g} s") from None
            finally:
                self.waiting -= 1
                self.metrics.streams_queued -= 1
        else:
            await self._sem.acquire()
        try:
            yield
        finally:
            self._sem.release()


def _close_generator(gen: Any) -> None:
    close = getattr(gen, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001 - a failing close must not take the worker down
            log.exception("engine generator failed to close")


class RtcloneServer:
    """Shared state of a running server: engine, registry, limits, metrics, worker pool."""

    def __init__(
        self,
        engine: VoiceEngine | None,
        *,
        voices_dir: str | Path | None = None,
        limits: ServerLimits = ServerLimits(),
        token: str | None = None,
        batch_vocoder: bool = True,
    ) -> None:
        self.engine = engine
        self.limits = limits
        self.batch_vocoder = batch_vocoder
        self._batching_started = False  # this server turned the engine's vocoder batching on
        self.token = token or None
        self.registry = VoiceRegistry(voices_dir or default_voices_dir(), max_voices=limits.max_voices)
        self.metrics = ServerMetrics()
        self.metrics.ready = engine is not None
        self.slots = StreamSlots(limits, self.metrics)
        self.executor = ThreadPoolExecutor(max_workers=limits.max_streams + 2, thread_name_prefix="rtclone-worker")
        self.draining = False
        self.port: int | None = None
        self._ws: Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._start_batching()

    def _start_batching(self) -> None:
        """Turn on the engine's vocoder batching (when wanted, offered, and not already on)."""
        start = getattr(self.engine, "start_vocoder_batching", None)
        if not self.batch_vocoder or start is None or getattr(self.engine, "batch_vocoder", False):
            return
        self._batching_started = bool(start())
        if self._batching_started:
            log.info("vocoder batching on: concurrent streams share the sample loop")

    def _stop_batching(self) -> None:
        if self._batching_started:
            self._batching_started = False
            self.engine.stop_vocoder_batching()  # type: ignore[union-attr]

    # ---- helpers used by sessions -----------------------------------------------------------------
    def welcome(self) -> str:
        return message(
            "welcome", server="rtclone", version=__version__, protocol=PROTOCOL_VERSION, ready=self.engine is not None,
            sample_rate=16000 if self.engine is None else int(self.engine.sample_rate), format=AUDIO_FORMAT,
            channels=1, limits=asdict(self.limits),
        )  # fmt: skip

    def require_engine(self) -> VoiceEngine:
        if self.engine is None:
            raise BusyError("the engine is still loading; try again shortly (see /readyz)")
        return self.engine

    async def run_in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking engine work in the worker pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def generator(self, gen: Iterator[np.ndarray]) -> AsyncIterator[Callable[[], Awaitable[np.ndarray | None]]]:
        """``async with server.generator(gen) as pull: chunk = await pull()`` (None at the end).

        Each ``pull`` advances ``gen`` in a worker thread. On exit (also when the stream is
        cancelled) the chunk in progress is awaited and ``gen.close()`` runs in a worker, so what
        the generator holds is freed before the stream's slot is released.
        """
        loop = asyncio.get_running_loop()
        inflight: asyncio.Future | None = None

        async def pull() -> np.ndarray | None:
            nonlocal inflight
            inflight = loop.run_in_executor(self.executor, next, gen, None)
            return await asyncio.shield(inflight)

        async def cleanup() -> None:
            if inflight is not None:
                await asyncio.wait([inflight])
                if not inflight.cancelled():
                    inflight.exception()  # retrieved: it was reported (or deliberately dropped)
            await loop.run_in_executor(self.executor, _close_generator, gen)

        try:
            yield pull
        finally:
            task = asyncio.ensure_future(cleanup())
            self.track(task)
            await asyncio.shield(task)

    # ---- HTTP and handshake -----------------------------------------------------------------------
    def _http(self, connection: ServerConnection, status: int, body: bytes | str, content_type: str) -> Response:
        response = connection.respond(status, "")
        data = body.encode() if isinstance(body, str) else body
        del response.headers["Content-Length"]
        del response.headers["Content-Type"]
        response.headers["Content-Length"] = str(len(data))
        response.headers["Content-Type"] = content_type
        response.headers["Cache-Control"] = "no-store"
        response.body = data
        return response

    def _authorised(self, request: Request, query: dict[str, list[str]]) -> bool:
        if self.token is None:
            return True
        offered = query.get("token", [""])[0]
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            offered = auth[len("Bearer ") :]
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Serve the HTTP routes; check the token of WebSocket upgrades (401 when wrong)."""
        path, _, qs = request.path.partition("?")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            if path == "/healthz":
                return self._http(connection, 200, "ok\n", "text/plain")
            if path == "/readyz":
                ok = self.engine is not None and not self.draining
                return self._http(connection, 200 if ok else 503, "ready\n" if ok else "not ready\n", "text/plain")
            if path == "/metrics":
                self.metrics.ready = self.engine is not None and not self.draining
                stats = getattr(self.engine, "worker_stats", None)
                self.metrics.workers = stats() if stats is not None else None
                return self._http(connection, 200, self.metrics.render(), CONTENT_TYPE)
            if path in STATIC:
                name, ctype = STATIC[path]
                return self._http(connection, 200, (WEB_DIR / name).read_bytes(), f"{ctype}; charset=utf-8")
            return self._http(connection, 404, "not found\n", "text/plain")
        if not self._authorised(request, parse_qs(qs)):
            self.metrics.errors["unauthorized"] += 1
            return self._http(connection, http.HTTPStatus.UNAUTHORIZED, "unauthorized: missing or wrong token\n", "text/plain")
        if self.draining:
            return self._http(connection, 503, "shutting down\n", "text/plain")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        self.metrics.connections += 1
        session = Session(self, ws)
        try:
            await session.run()
        except ConnectionClosed:
            pass
        finally:
            await session.close()
            self.metrics.connections -= 1

    # ---- life cycle -------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 8765) -> "RtcloneServer":
        """Listen (port 0 picks a free port, see ``self.port``)."""
        self._ws = await ws_serve(
            self.handler, host, port, process_request=self.process_request,
            max_size=self.limits.max_message_bytes, ping_interval=20, ping_timeout=20,
        )  # fmt: skip
        self.port = self._ws.sockets[0].getsockname()[1]
        return self

    async def load_engine(self, factory: Callable[[], VoiceEngine]) -> None:
        """Build the engine in a worker thread while the server already answers /healthz."""
        self.engine = await asyncio.to_thread(factory)
        self._start_batching()
        self.metrics.ready = True
        log.info("engine loaded: %s", type(self.engine).__name__)

    async def shutdown(self, grace_s: float | None = None) -> None:
        """Graceful stop: refuse new work, let running streams finish (up to the grace), close."""
        grace_s = self.limits.shutdown_grace_s if grace_s is None else grace_s
        self.draining = True
        self.metrics.ready = False
        if self._ws is not None:
            self._ws.server.close()  # stop accepting connections; open ones go on
        running = [t for t in self._tasks if not t.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=grace_s)
            for task in late:
                task.cancel()
        if self._ws is not None:
            self._ws.close(close_connections=True)
            await self._ws.wait_closed()
        leftovers = [t for t in self._tasks if not t.done()]
        if leftovers:
            await asyncio.wait(leftovers, timeout=5.0)
        await asyncio.to_thread(self._stop_batching)  # joins the batching thread (after its block in progress)
        self.executor.shutdown(wait=False, cancel_futures=True)


@contextlib.asynccontextmanager
async def running_server(engine: VoiceEngine | None, **kwargs: Any) -> AsyncIterator[RtcloneServer]:
    """``async with running_server(engine, port=0, voices_dir=...) as srv`` (tests, benchmarks)."""
    host, port = kwargs.pop("host", "127.0.0.1"), kwargs.pop("port", 0)
    server = await RtcloneServer(engine, **kwargs).start(host, port)
    try:
        yield server
    finally:
        await server.shutdown(grace_s=0.0)


async def serve(
    engine: VoiceEngine | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    voices_dir: str | Path | None = None,
    limits: ServerLimits = ServerLimits(),
    token: str | None = None,
    engine_factory: Callable[[], VoiceEngine] | None = None,
    stop: asyncio.Event | None = None,
    batch_vocoder: bool = True,
) -> None:
    """Run the server until SIGTERM/SIGINT (or ``stop`` is set), then shut down gracefully.

    With ``engine=None`` the engine is built by ``engine_factory`` after the socket is listening
    (``/readyz`` says 503 until then).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    # The audio front-end (decoding, PCM16) is imported lazily elsewhere; load it before the first request.
    await asyncio.to_thread(importlib.import_module, "rtclone.audio")
    server = await RtcloneServer(engine, voices_dir=voices_dir, limits=limits, token=token,
                                 batch_vocoder=batch_vocoder).start(host, port)  # fmt: skip
    log.info("rtclone server listening on ws://%s:%d (voices in %s)", host, server.port, server.registry.folder)
    try:
        if engine is None and engine_factory is not None:
            loader = asyncio.ensure_future(server.load_engine(engine_factory))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait([loader, stopper], return_when=asyncio.FIRST_COMPLETED)
            if loader.done():
                loader.result()  # raise a loading error now
            else:
                loader.cancel()
        await stop.wait()
        log.info("shutting down (grace %.1f s)", limits.shutdown_grace_s)
    finally:
        await server.shutdown()
        close = getattr(server.engine, "close", None) if engine is None else None
        if close is not None:  # the engine this server built (worker processes)
            await asyncio.to_thread(close)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)


def run_server(
    engine: VoiceEngine | None = None,
    *,
    models: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    voices_dir: str | Path | None = None,
    limits: ServerLimits = ServerLimits(),
    token: str | None = None,
    batch_vocoder: bool = True,
    decoder_int8: bool | None = None,
    workers: int = 1,
    threads: int = 1,
) -> None:
    """Blocking entry point: serve ``engine`` (or ``make_engine(models, decoder_int8)``) until SIGTERM/SIGINT;
    with ``workers`` > 1 that engine runs in as many processes (:class:`rtclone.serve.workers.WorkerEngine`,
    each with ``threads`` torch threads)."""
    factory = None
    if engine is None and workers > 1:
        import functools

        from .workers import WorkerEngine

        build = functools.partial(make_engine, models, decoder_int8, warm=True)
        factory = lambda: WorkerEngine(build, workers=workers, threads=threads)  # noqa: E731
    elif engine is None:
        factory = lambda: make_engine(models, decoder_int8, warm=True)  # noqa: E731
    asyncio.run(serve(engine, host=host, port=port, voices_dir=voices_dir, limits=limits, token=token,
                      engine_factory=factory, batch_vocoder=batch_vocoder))  # fmt: skip


STREAMS_PER_WORKER = 4  # rtclone serve's default max_streams per synthesis process


def default_workers() -> int:
    """``rtclone serve``'s synthesis processes: one per core this process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def set_torch_threads(threads: int) -> None:
    """Give torch ``threads`` intra-op threads for the whole process (the server's default: 1).

    The server's parallelism is its streams: each runs in its own worker thread (and the shared vocoder
    in another), and every thread that calls torch gets its own team of intra-op threads. With torch's
    default (one per core) that oversubscribes the cores: on 2 cores one client's time to first audio
    went from 36 to 90 ms and 8 clients kept 0 of 40 streams in real time instead of 11
    (``benchmarks/latency.py --threads 2`` against ``--threads 1``, benchmarks/README.md)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 256:
        raise OptionsError(f"threads must be an integer in 1..256, got {threads!r}")
    import torch

    torch.set_num_threads(threads)


def serve_main(
    host: str = "127.0.0.1",
    port: int = 8765,
    models: str | None = None,
    voices_dir: str | None = None,
    token: str | None = None,
    max_streams: int | None = None,
    max_queue: int = 8,
    max_text_chars: int = 5000,
    max_reference_s: float = 60.0,
    log_level: str = "info",
    batch_vocoder: bool = True,
    decoder_int8: bool | None = None,
    threads: int = 1,
    workers: int | None = None,
) -> int:
    """``rtclone serve``: returns the process exit status. The token may also come from $RTCLONE_TOKEN.
    ``batch_vocoder=False`` lets every stream run its own vocoder loop (no shared batching thread).
    ``threads``: torch's intra-op threads (``set_torch_threads``) of the server and of each worker.
    ``workers``: synthesis processes (None: ``default_workers()``; 1: synthesis in the server's own process).
    ``max_streams``: streams computed at once (None: 4 per worker, what one process keeps in real time on this
    project's 2-core machine; benchmarks/README.md)."""
    set_torch_threads(threads)
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise OptionsError(f"workers must be an integer in 1..64, got {workers!r}")
    max_streams = STREAMS_PER_WORKER * workers if max_streams is None else max_streams
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    logging.getLogger("websockets").setLevel(logging.WARNING)
    limits = ServerLimits(max_streams=max_streams, max_queue=max_queue, max_text_chars=max_text_chars,
                          max_reference_s=max_reference_s)  # fmt: skip
    run_server(models=models, host=host, port=port, voices_dir=voices_dir, limits=limits,
               token=token or os.environ.get("RTCLONE_TOKEN"), batch_vocoder=batch_vocoder, decoder_int8=decoder_int8,
               workers=workers, threads=threads)  # fmt: skip
    return 0
