"""Synthesis in worker processes: the server's engine with one interpreter lock per core.

The engine's work is thousands of small torch ops a second with Python between them, so threads
of one process take turns on its interpreter lock: on 2 cores two concurrent streams ran no faster
together than one after the other (aggregate RTF 0.055 against 0.052 alone), while two processes
ran side by side (0.028). ``WorkerEngine`` is a :class:`rtclone.pipeline.VoiceEngine` whose
``embed`` and ``stream`` run in ``workers`` processes (spawned, each building its own engine with
``factory`` — e.g. ``functools.partial(make_engine, models)`` — and using ``threads`` torch
threads); a stream goes to the worker with the fewest jobs and its chunks come back over a pipe
as they are made.

Failures keep their type: an error the engine raises in a worker (``TextError``, ``AudioError`` ...)
is raised again here with its message. A worker that dies fails its running jobs with a
``SynthesisError`` and is started again; the other workers go on serving. Closing a stream early
(a cancel, a client gone) tells its worker to stop making it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import queue
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any, Callable, Iterator

import numpy as np

from .. import errors
from ..errors import BusyError, OptionsError, RtcloneError, SynthesisError
from ..pipeline import SynthesisOptions, VoiceEngine

__all__ = ["WorkerEngine"]
log = logging.getLogger("rtclone.serve")


def _describe(exc: BaseException) -> tuple[str, str]:
    return type(exc).__name__, str(exc)


def _rebuild(name: str, text: str) -> Exception:
    """The exception a worker reported: the same ``rtclone.errors`` type, else a RuntimeError (an internal error)."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, RtcloneError):
        try:
            return cls(text)
        except Exception:  # noqa: BLE001 - a constructor with other arguments: keep the message
            pass
    return RuntimeError(f"{name} in a synthesis worker: {text}")


def _worker_main(conn: Connection, factory: Callable[[], VoiceEngine], threads: int) -> None:
    """A worker process: build the engine, then run each job it is sent in a thread of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops its workers
    try:
        from .server import set_torch_threads

        set_torch_threads(threads)
        engine = factory()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("failed", None, _describe(exc)))
        return
    conn.send(("ready", None, int(engine.sample_rate)))
    lock, cancelled = threading.Lock(), set()

    def send(msg: tuple) -> None:
        with lock:
            conn.send(msg)

    def run(kind: str, jid: int, args: tuple) -> None:
        try:
            if kind == "stream":
                for chunk in engine.stream(*args):
                    if jid in cancelled:
                        break
                    send(("chunk", jid, np.ascontiguousarray(chunk, dtype=np.float32)))
                send(("end", jid, None))
            elif kind == "embed":
                send(("result", jid, engine.embed(*args)))
            elif args[0] is None:  # "batching" asked: is the engine's vocoder batching on?
                send(("result", jid, bool(getattr(engine, "batch_vocoder", False))))
            else:  # "batching": the engine's optional vocoder batching on (True) or off (False)
                name = "start_vocoder_batching" if args[0] else "stop_vocoder_batching"
                method = getattr(engine, name, None)
                send(("result", jid, bool(method()) if method is not None else False))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            try:
                send(("error", jid, _describe(exc)))
            except (OSError, ValueError):
                pass  # the parent is gone
        finally:
            cancelled.discard(jid)

    while True:
        try:
            kind, jid, args = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if kind == "stop":
            return
        if kind == "cancel":
            cancelled.add(jid)
            continue
        threading.Thread(target=run, args=(kind, jid, args), daemon=True, name=f"rtclone-job-{jid}").start()


class _Worker:
    """One worker process, the pipe to it, and the queues of its running jobs."""

    def __init__(self, ctx: Any, index: int, args: tuple) -> None:
        self.index = index
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, *args), name=f"rtclone-synth-{index}", daemon=True)
        self.proc.start()
        child.close()
        self.jobs: dict[int, queue.SimpleQueue] = {}
        self.lock = threading.Lock()
        self.ready = False

    def wait_ready(self, timeout_s: float) -> int:
        """The worker's sample rate once its engine is loaded; raises what its loading raised."""
        if not self.conn.poll(timeout_s):
            self.proc.kill()
            raise SynthesisError(f"synthesis worker {self.index} did not load its models within {timeout_s:.0f} s")
        try:
            kind, _, payload = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise SynthesisError(f"synthesis worker {self.index} exited while loading (exit code {self.proc.exitcode})") from exc
        if kind == "failed":
            self.proc.join(5)
            raise _rebuild(*payload)
        self.ready = True
        return payload

    def submit(self, jid: int, kind: str, args: tuple) -> queue.SimpleQueue:
        q: queue.SimpleQueue = queue.SimpleQueue()
        with self.lock:
            if not self.ready:
                raise BusyError("the synthesis worker is restarting; try again shortly")
            try:
                self.conn.send((kind, jid, args))
            except (OSError, ValueError) as exc:  # it has just died: its reader will start it again
                raise BusyError("the synthesis worker is restarting; try again shortly") from exc
            self.jobs[jid] = q
        return q

    def finish(self, jid: int, cancel: bool) -> None:
        with self.lock:
            if self.jobs.pop(jid, None) is not None and cancel and self.ready:
                try:
                    self.conn.send(("cancel", jid, None))
                except (OSError, ValueError):
                    pass  # it has just died: nothing left to stop

    def read(self) -> list[queue.SimpleQueue]:
        """Route the worker's messages to its jobs until the pipe closes; returns the jobs left running."""
        while True:
            try:
                kind, jid, payload = self.conn.recv()
            except (EOFError, OSError):
                break
            with self.lock:
                q = self.jobs.get(jid)
                if kind in ("end", "error", "result"):
                    self.jobs.pop(jid, None)
            if q is not None:
                q.put((kind, payload))
        with self.lock:
            self.ready = False
            jobs, self.jobs = self.jobs, {}
        return list(jobs.values())


class WorkerEngine:
    """A VoiceEngine running ``factory()`` (a picklable callable) in ``workers`` processes (see the module doc)."""

    def __init__(self, factory: Callable[[], VoiceEngine], *, workers: int = 2, threads: int = 1,
                 start_timeout_s: float = 300.0) -> None:  # fmt: skip
        for name, v, hi in (("workers", workers, 64), ("threads", threads, 256)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise OptionsError(f"{name} must be an integer in 1..{hi}, got {v!r}")
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds torch's threads
        self._args, self._timeout = (factory, threads), start_timeout_s
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._closing = False
        self._batching_on = False
        self._deaths = 0
        self._workers: list[_Worker] = []
        try:
            started = [_Worker(self._ctx, i, self._args) for i in range(workers)]
            self._workers = started
            rates = {w.wait_ready(start_timeout_s) for w in started}
        except BaseException:
            self.close()
            raise
        (self.sample_rate,) = rates
        for w in started:
            self._watch(w)

    @property
    def workers(self) -> int:
        return len(self._workers)

    def worker_stats(self) -> dict[str, int]:
        """{"workers", "ready" (serving now), "deaths" (workers that died unasked, each then started again)}: the
        server's /metrics reports them."""
        return {"workers": len(self._workers), "ready": sum(w.ready for w in self._workers), "deaths": self._deaths}

    def _watch(self, w: _Worker) -> None:
        threading.Thread(target=self._reader, args=(w,), daemon=True, name=f"rtclone-synth-reader-{w.index}").start()

    def _reader(self, w: _Worker) -> None:
        left = w.read()
        if not self._closing:  # else close() joins it (one thread only may reap a process)
            w.proc.join(5)
        for q in left:
            q.put(("died", w.proc.exitcode))
        if self._closing:
            return
        self._deaths += 1
        log.error("synthesis worker %d died (exit code %s); starting it again", w.index, w.proc.exitcode)
        try:
            new = _Worker(self._ctx, w.index, self._args)
            new.wait_ready(self._timeout)
        except Exception:  # noqa: BLE001 - it is logged; the other workers go on
            log.exception("synthesis worker %d could not be started again", w.index)
            return
        self._watch(new)
        if self._batching_on:  # before it takes jobs
            try:
                self._batch(new, True)
            except Exception:  # noqa: BLE001 - it serves unbatched then
                log.exception("synthesis worker %d: vocoder batching could not be turned on again", w.index)
        with self._lock:
            if not self._closing:
                self._workers[w.index] = new
                return
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile: close() did not see it, so it stops here
            new.conn.send(("stop", None, None))
        new.proc.join(10)

    def _submit(self, kind: str, args: tuple) -> tuple[_Worker, int, queue.SimpleQueue]:
        with self._lock:
            if self._closing:
                raise BusyError("the engine is shutting down")
            live = [w for w in self._workers if w.ready]
            if not live:
                raise BusyError("no synthesis worker is ready (restarting, or failed to restart: see the server's log)")
            w = min(live, key=lambda x: (len(x.jobs), x.index))
            jid = next(self._ids)
            return w, jid, w.submit(jid, kind, args)

    @staticmethod
    def _failure(kind: str, payload: Any) -> Exception:
        if kind == "error":
            return _rebuild(*payload)
        return SynthesisError(f"the synthesis worker process died (exit code {payload}) before this finished; "
                              "it is being started again")  # fmt: skip

    def _wait(self, w: _Worker, jid: int, q: queue.SimpleQueue) -> Any:
        kind, payload = q.get()
        w.finish(jid, cancel=False)
        if kind != "result":
            raise self._failure(kind, payload)
        return payload

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        return self._wait(*self._submit("embed", (np.asarray(audio, dtype=np.float32), sr)))

    def stream(self, text: str, embedding: np.ndarray, options: SynthesisOptions = SynthesisOptions()) -> Iterator[np.ndarray]:
        w, jid, q = self._submit("stream", (text, np.asarray(embedding, dtype=np.float32), options))
        done = False
        try:
            while True:
                kind, payload = q.get()
                if kind == "chunk":
                    yield payload
                    continue
                done = True
                if kind == "end":
                    return
                raise self._failure(kind, payload)
        finally:
            w.finish(jid, cancel=not done)

    def _batch(self, w: _Worker, on: bool | None) -> bool:
        """Turn ``w``'s vocoder batching on or off (None: ask whether it is on)."""
        jid = next(self._ids)
        return bool(self._wait(w, jid, w.submit(jid, "batching", (on,))))

    def _batching(self, on: bool) -> bool:
        self._batching_on = on  # a worker started again later gets the same
        return any([self._batch(w, on) for w in list(self._workers) if w.ready])

    def start_vocoder_batching(self) -> bool:
        """Each worker's engine shares its vocoder's sample loop among that worker's streams (when it offers that)."""
        return self._batching(True)

    def stop_vocoder_batching(self) -> None:
        self._batching(False)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the workers (running jobs end with an error); idempotent."""
        with self._lock:
            self._closing = True
            workers = list(self._workers)
        for w in workers:
            try:
                w.conn.send(("stop", None, None))
            except (OSError, ValueError):
                pass
        for w in workers:
            w.proc.join(timeout_s)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(5)
