"""Continuous batching of vocoder sample loops across concurrent streams.

A :class:`VocoderBatcher` owns one worker thread (or ``workers``). Streams open a :class:`BatchLane`
(a runner ``(cond (B, n, C), uniforms (B, n, 2), state) -> (samples (B, n), state)`` like those of
:func:`rtclone.vocoder_gen.make_runner`) and call it block by block; each call becomes a request
that the worker takes together with everything else pending: requests for the same runner and
block length ``n`` are stacked along the batch axis (the loop state ``(x (B,), h1 (B, R),
h2 (B, R))`` is per row for the torch reference and the native kernel alike) and run by ONE
runner call, whose samples and state are split back to the requesters. Streams join and leave
at any time; a lone request runs with the caller's own tensors, exactly as without the batcher
(and the only open lane, while the worker is idle, runs its block in its own thread: no hand-off).

Gathering: after taking the oldest request the worker waits (at most ``max_wait_ms``) while a
lane that just got its result back has not yet submitted its next block or declared itself idle
(:meth:`BatchLane.idle`, e.g. while it waits for synthesizer frames), so streams that are in step
share each call instead of taking turns. A failing batched call is retried request by request,
so an error reaches only the request that caused it. After :meth:`VocoderBatcher.close` the
worker drains what is pending and exits; lanes then call their runner directly.

Rows of a batch are computed independently by both backends, but a row's last float bits can
depend on its batch-mates (MKL GEMM blocking in the torch loop; the native kernel's 4-row lockstep
path sums in another order than its 1-row path): hidden state within ~2e-7, so a stream matches
its solo audio unless a sampled label sits on a rounding edge (tests/test_vocoder_batch.py).

Policy (benchmarks/vocoder_batching.py, 2 shared cores): one stream never waits or hands off;
2-8 streams of an RTVC-size vocoder at 96 % sparsity gain ~1.0-1.1x (2) and ~1.3-1.4x (4, 8)
aggregate throughput, a 256-unit one at 90 % ~1.0-1.1x (2, 4) and ~1.2-1.4x (8).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .errors import OptionsError

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x (B,), h1 (B, R), h2 (B, R)
Runner = Callable[[torch.Tensor, torch.Tensor, "State | None"], tuple[torch.Tensor, State]]

_IDLE, _PENDING, _RETURNED = "idle", "pending", "returned"


@dataclass(frozen=True)
class BatcherOptions:
    """Run-time options of a :class:`VocoderBatcher` (validated here, in one place)."""

    max_batch: int = 4  # most rows (stream blocks) per runner call: the native kernel's lockstep width; 8 was no better
    max_wait_ms: float = 5.0  # longest a taken request waits for in-step streams to join its batch
    workers: int = 1  # threads taking batches (2 can run two batches at once; not better on 2 shared cores)

    def __post_init__(self) -> None:
        if not isinstance(self.max_batch, int) or isinstance(self.max_batch, bool) or not 1 <= self.max_batch <= 1024:
            raise OptionsError(f"max_batch must be an integer in [1, 1024], got {self.max_batch!r}")
        w = self.max_wait_ms
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0.0 <= w <= 1000.0:
            raise OptionsError(f"max_wait_ms must be a number in [0, 1000], got {w!r}")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or not 1 <= self.workers <= 64:
            raise OptionsError(f"workers must be an integer in [1, 64], got {self.workers!r}")


class _Request:
    __slots__ = ("lane", "runner", "cond", "uniforms", "state", "future", "key", "rows")

    def __init__(self, lane: "BatchLane | None", runner: Runner, cond: torch.Tensor, uniforms: torch.Tensor, state: State | None) -> None:
        self.lane, self.runner, self.cond, self.uniforms, self.state = lane, runner, cond, uniforms, state
        self.future: Future = Future()
        self.rows = int(cond.shape[0]) if cond.dim() >= 1 else 1
        # same runner, block length and width: stackable (a malformed request gets a key of its own)
        self.key = (runner, tuple(cond.shape[1:]), tuple(uniforms.shape[1:])) if cond.dim() == 3 else (runner, id(self))


class BatchLane:
    """One stream's handle on a :class:`VocoderBatcher`: call it like its runner.

    ``lane(cond (B, n, C), uniforms (B, n, 2), state)`` blocks until the worker has run the block
    (possibly stacked with other lanes' blocks) and returns ``(samples (B, n), state)``.
    Use it as a context manager (or call :meth:`close`) so a finished stream frees its place.
    """

    def __init__(self, batcher: "VocoderBatcher", runner: Runner) -> None:
        self.batcher, self.runner = batcher, runner
        self.closed = False

    def __call__(self, cond: torch.Tensor, uniforms: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        return self.wait(self.submit(cond, uniforms, state))

    def submit(self, cond: torch.Tensor, uniforms: torch.Tensor, state: State | None = None) -> Future:
        """Queue one block and return at once (the caller may prepare its next block meanwhile)."""
        return self.batcher._submit(self, self.runner, cond, uniforms, state)

    def wait(self, future: Future) -> tuple[torch.Tensor, State]:
        """The result of a block from :meth:`submit` (raises its error, or CancelledError)."""
        try:
            return future.result()
        except CancelledError:
            self.idle()
            raise

    def idle(self) -> None:
        """Say that no block will come from this lane soon (the worker stops waiting for it)."""
        self.batcher._set_lane(self, _IDLE)

    def close(self) -> None:
        """Leave the batcher; a request of this lane still waiting is cancelled. Idempotent."""
        self.batcher._close_lane(self)

    def __enter__(self) -> "BatchLane":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class VocoderBatcher:
    """Worker thread(s) that run the sample-loop blocks of concurrent streams in shared calls.

    ``lane(runner)`` opens a stream's :class:`BatchLane`; ``submit`` / ``run`` send single
    requests without a lane (never waited for). The threads start with the first request;
    :meth:`close` (or leaving a ``with`` block) runs what is pending and joins them.
    ``batch_sizes`` counts runner calls by rows (statistics).
    """

    def __init__(self, options: BatcherOptions | None = None, name: str = "rtclone-vocoder-batcher") -> None:
        self.options = options if options is not None else BatcherOptions()
        self.name = name
        self.batch_sizes: Counter[int] = Counter()
        self._cv = threading.Condition()
        self._queue: list[_Request] = []
        self._lanes: dict[BatchLane, str] = {}
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._busy = 0  # batches being run by the workers

    # ---- public ---------------------------------------------------------------------------------
    def lane(self, runner: Runner) -> BatchLane:
        """Open a lane for one stream whose blocks run on ``runner``."""
        lane = BatchLane(self, runner)
        with self._cv:
            if not self._closed:
                self._lanes[lane] = _IDLE
        return lane

    def submit(self, runner: Runner, cond: torch.Tensor, uniforms: torch.Tensor, state: State | None = None) -> Future:
        """Queue one block; the Future resolves to ``(samples, state)`` (or the runner's exception).

        ``future.cancel()`` withdraws it while it is still queued. After :meth:`close` the block
        runs at once in the calling thread (the returned Future is already resolved).
        """
        return self._submit(None, runner, cond, uniforms, state)

    def run(self, runner: Runner, cond: torch.Tensor, uniforms: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """``submit(...).result()``."""
        return self.submit(runner, cond, uniforms, state).result()

    @property
    def active_lanes(self) -> int:
        """Open lanes (streams currently using the batcher)."""
        with self._cv:
            return len(self._lanes)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def running(self) -> bool:
        """True while a worker thread is alive."""
        return any(t.is_alive() for t in self._threads)

    def close(self, timeout: float | None = None) -> None:
        """Stop taking requests, run those pending, join the worker. Lanes keep working (directly)."""
        with self._cv:
            self._closed = True
            self._lanes.clear()
            self._cv.notify_all()
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def __enter__(self) -> "VocoderBatcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- requester side -------------------------------------------------------------------------
    def _submit(self, lane: BatchLane | None, runner: Runner, cond: torch.Tensor, uniforms: torch.Tensor,
                state: State | None) -> Future:  # fmt: skip
        req = _Request(lane, runner, cond, uniforms, state)
        alone = False
        with self._cv:
            if self._closed:
                pass  # run here, below
            elif lane is not None and self._lanes.keys() == {lane} and not self._queue and not self._busy:
                alone = True  # the only stream and an idle worker: nothing to stack with, skip the hand-off
                self._lanes[lane] = _PENDING
                self.batch_sizes[req.rows] += 1
            else:
                if lane is not None and not lane.closed:
                    self._lanes[lane] = _PENDING
                self._queue.append(req)
                if not self._threads:
                    for i in range(self.options.workers):
                        self._threads.append(threading.Thread(target=self._loop, name=f"{self.name}-{i}", daemon=True))
                        self._threads[-1].start()
                self._cv.notify_all()
                return req.future
        req.future.set_running_or_notify_cancel()
        _resolve(req.future, _run_one(req))
        if alone:
            self._set_lane(lane, _RETURNED)  # type: ignore[arg-type]
        return req.future

    def _set_lane(self, lane: BatchLane, status: str) -> None:
        with self._cv:
            if lane in self._lanes:
                self._lanes[lane] = status
                self._cv.notify_all()

    def _close_lane(self, lane: BatchLane) -> None:
        with self._cv:
            lane.closed = True
            self._lanes.pop(lane, None)
            for req in self._queue:
                if req.lane is lane:
                    req.future.cancel()
            self._cv.notify_all()

    # ---- worker side ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return  # closed and drained
                self._gather()
                batch = self._take() if self._queue else []  # another worker may have taken it meanwhile
                self._busy += 1
            try:
                if batch:
                    self._execute(batch)
            finally:
                with self._cv:
                    self._busy -= 1

    def _gather(self) -> None:
        """Wait (lock held by the caller) until the oldest request's batch is full or no lane that
        just got a result is still expected, at most ``max_wait_ms``."""
        deadline = time.perf_counter() + self.options.max_wait_ms / 1000.0
        while not self._closed and self._queue:
            key = self._queue[0].key
            rows = sum(r.rows for r in self._queue if r.key == key and not r.future.cancelled())
            if rows >= self.options.max_batch or _RETURNED not in self._lanes.values():
                return
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._cv.wait(remaining)

    def _take(self) -> list[_Request]:
        """Remove and return the oldest request and those stackable with it (up to max_batch rows)."""
        key, taken, rest, rows = self._queue[0].key, [], [], 0
        for req in self._queue:
            if req.key == key and (not taken or rows + req.rows <= self.options.max_batch):
                if req.future.set_running_or_notify_cancel():  # False: cancelled while queued: dropped
                    taken.append(req)
                    rows += req.rows
            else:
                rest.append(req)
        self._queue = rest
        return taken

    def _execute(self, batch: list[_Request]) -> None:
        if len(batch) == 1:
            outcomes = [_run_one(batch[0])]
        else:
            try:
                outcomes = _run_stacked(batch)
            except Exception:  # noqa: BLE001 - isolate: each request alone gets its own result or error
                outcomes = [_run_one(r) for r in batch]
        with self._cv:
            self.batch_sizes[sum(r.rows for r in batch)] += 1
            for req in batch:
                if req.lane is not None and req.lane in self._lanes:
                    self._lanes[req.lane] = _RETURNED  # expected back soon: the next gather waits for it
        for req, outcome in zip(batch, outcomes):
            _resolve(req.future, outcome)


def _run_one(req: _Request) -> tuple[bool, Any]:
    try:
        return True, req.runner(req.cond, req.uniforms, req.state)
    except BaseException as exc:  # noqa: BLE001 - handed to the requester
        return False, exc


def _run_stacked(batch: list[_Request]) -> list[tuple[bool, Any]]:
    cond = torch.cat([r.cond for r in batch])  # (sum B, n, C)
    uniforms = torch.cat([r.uniforms for r in batch])  # (sum B, n, 2)
    state = _stack_states(batch)
    samples, new_state = batch[0].runner(cond, uniforms, state)  # (sum B, n), ((sum B,), (sum B, R), (sum B, R))
    out, start = [], 0
    for r in batch:
        rows = slice(start, start + r.rows)
        out.append((True, (samples[rows].clone(), tuple(s[rows].clone() for s in new_state))))
        start += r.rows
    return out


def _stack_states(batch: list[_Request]) -> State | None:
    """Concatenate the requests' states; a None state (a stream's first block) is zeros (its meaning)."""
    known = [r.state for r in batch if r.state is not None]
    if not known:
        return None
    x0, h10, h20 = known[0]
    parts = []
    for r in batch:
        if r.state is None:
            parts.append((x0.new_zeros(r.rows), h10.new_zeros(r.rows, h10.shape[1]), h20.new_zeros(r.rows, h20.shape[1])))
        else:
            parts.append(tuple(r.state))
    return tuple(torch.cat([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def _resolve(future: Future, outcome: tuple[bool, Any]) -> None:
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
