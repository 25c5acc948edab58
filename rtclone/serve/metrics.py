"""Server metrics in the Prometheus text exposition format (version 0.0.4), written by hand.

Only what the server needs: counters (optionally with one label), gauges and cumulative
histograms. Updated from the event loop thread only, so no locking.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict

TTFA_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 2.5, 5.0, 10.0)  # seconds
RTF_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class Histogram:
    """A cumulative histogram with fixed upper bounds."""

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.bounds = name, help_text, tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, x: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, x)] += 1
        self.sum += x
        self.count += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, n in zip((*self.bounds, math.inf), self.counts):
            running += n
            lines.append(f'{self.name}_bucket{{le="{_fmt(bound)}"}} {running}')
        lines += [f"{self.name}_sum {_fmt(self.sum)}", f"{self.name}_count {self.count}"]
        return lines


class ServerMetrics:
    """Every metric the server exports (names prefixed ``rtclone_``)."""

    def __init__(self) -> None:
        self.ttfa = Histogram("rtclone_ttfa_seconds", "Time from a synth request to its first audio frame.", TTFA_BUCKETS)
        self.rtf = Histogram("rtclone_rtf", "Real-time factor of finished streams (compute time / audio time).", RTF_BUCKETS)
        self.streams_in_flight = 0
        self.streams_queued = 0
        self.connections = 0
        self.streams = defaultdict(int)  # outcome → count (done, cancelled, error)
        self.errors = defaultdict(int)  # error code → count
        self.enrolments = 0
        self.audio_seconds = 0.0
        self.ready = False
        self.workers: dict[str, int] | None = None  # an engine with synthesis worker processes: its worker_stats()

    def render(self) -> str:
        """The whole exposition as text."""
        lines: list[str] = []

        def scalar(name: str, kind: str, help_text: str, value: float) -> None:
            lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {_fmt(value)}"])

        def labelled(name: str, label: str, help_text: str, values: dict[str, int]) -> None:
            lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} counter"])
            lines.extend(f'{name}{{{label}="{key}"}} {n}' for key, n in sorted(values.items()))

        scalar("rtclone_ready", "gauge", "1 when the engine is loaded and the server accepts streams.", int(self.ready))
        scalar("rtclone_streams_in_flight", "gauge", "Synthesis streams running now.", self.streams_in_flight)
        scalar("rtclone_streams_queued", "gauge", "Synthesis streams waiting for a slot.", self.streams_queued)
        scalar("rtclone_connections", "gauge", "Open WebSocket connections.", self.connections)
        labelled("rtclone_streams_total", "outcome", "Finished synthesis streams by outcome.", self.streams)
        labelled("rtclone_errors_total", "code", "Error messages sent, by code.", self.errors)
        scalar("rtclone_enrolments_total", "counter", "Voices enrolled.", self.enrolments)
        scalar("rtclone_audio_seconds_total", "counter", "Seconds of audio streamed.", self.audio_seconds)
        if self.workers is not None:
            scalar("rtclone_synthesis_workers", "gauge", "Synthesis worker processes.", self.workers["workers"])
            scalar("rtclone_synthesis_workers_ready", "gauge", "Synthesis worker processes serving now.", self.workers["ready"])
            scalar("rtclone_synthesis_worker_deaths_total", "counter", "Synthesis workers that died (each started again).",
                   self.workers["deaths"])  # fmt: skip
        lines += self.ttfa.render() + self.rtf.render()
        return "\n".join(lines) + "\n"


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {"name{labels}": value} (for tests and the benchmark)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out
