"""Synthesis in worker processes (rtclone.serve.workers.WorkerEngine): the same audio and embeddings as the
engine in this process, errors of the same type, cancels that stop the worker's job, a killed worker
replaced while the other serves on, and the server streaming through it."""

import asyncio
import functools
import os
import signal
import threading
import time

import numpy as np
import pytest
from conftest import tiny_cloner
from fakes import FakeEngine, run, voice_like
from rtclone.client import Client, wav_bytes
from rtclone.errors import BusyError, CheckpointError, OptionsError, ServerError, SynthesisError, TextError
from rtclone.pipeline import SynthesisOptions
from rtclone.serve.server import make_engine, running_server
from rtclone.serve.workers import WorkerEngine

TEXT = "Worker processes make the same audio. Second part."
OPTS = SynthesisOptions(seed=3, backend="torch")


@pytest.fixture(scope="module")
def local():
    return tiny_cloner(1)


@pytest.fixture(scope="module")
def engine():
    eng = WorkerEngine(functools.partial(tiny_cloner, 1), workers=2)
    yield eng
    eng.close()


def _audio(eng, text=TEXT, emb=None, opts=OPTS):
    return np.concatenate(list(eng.stream(text, emb, opts)))


def test_workers_make_the_same_audio_and_embeddings(engine, local):
    ref = voice_like(3.0, 140.0)
    emb = engine.embed(ref, 16000)
    np.testing.assert_array_equal(emb, local.embed(ref, 16000))
    assert engine.sample_rate == local.sample_rate and engine.workers == 2
    expected = _audio(local, emb=emb)
    assert expected.size > 1600
    results = [None] * 4

    def one(i):
        results[i] = _audio(engine, emb=emb)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]  # both workers, two jobs each
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for got in results:
        np.testing.assert_array_equal(got, expected)


def test_worker_errors_keep_their_type(engine, local):
    emb = local.embed(voice_like(3.0, 140.0), 16000)
    with pytest.raises(TextError) as info:
        _audio(engine, text="   ", emb=emb)
    with pytest.raises(TextError) as here:
        _audio(local, text="   ", emb=emb)
    assert str(info.value) == str(here.value)
    with pytest.raises(type(_raised(local.embed, np.zeros(16000, np.float32), 16000))):
        engine.embed(np.zeros(16000, np.float32), 16000)  # silence: the same AudioError subclass
    np.testing.assert_array_equal(_audio(engine, emb=emb), _audio(local, emb=emb))  # the workers serve on


def _raised(fn, *args):
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("expected an error")


def test_closing_a_stream_cancels_the_workers_job(engine, local):
    emb = local.embed(voice_like(3.0, 140.0), 16000)
    gen = engine.stream(TEXT * 4, emb, OPTS)
    next(gen)
    gen.close()
    for w in engine._workers:  # the job is gone from the parent's table at once
        assert not w.jobs
    np.testing.assert_array_equal(_audio(engine, emb=emb), _audio(local, emb=emb))


def test_a_killed_worker_fails_its_stream_and_is_replaced():
    eng = WorkerEngine(functools.partial(tiny_cloner, 1), workers=2)
    try:
        emb = eng.embed(voice_like(3.0, 140.0), 16000)
        expected = _audio(eng, emb=emb)
        assert eng.start_vocoder_batching() is True  # the tiny WaveRNN offers it; a replaced worker must get it too
        gen = eng.stream(TEXT * 8, emb, OPTS)
        next(gen)
        victim = next(w for w in eng._workers if w.jobs)
        os.kill(victim.proc.pid, signal.SIGKILL)
        with pytest.raises(SynthesisError, match="died"):
            for _ in gen:
                pass
        np.testing.assert_array_equal(_audio(eng, emb=emb), expected)  # the other worker serves meanwhile
        deadline = time.monotonic() + 120
        while not all(w.ready and w.proc.is_alive() for w in eng._workers):
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.2)
        assert eng._workers[victim.index] is not victim
        assert eng.worker_stats() == {"workers": 2, "ready": 2, "deaths": 1}
        assert [eng._batch(w, None) for w in eng._workers] == [True, True]
        for _ in range(2):  # both workers (the fewest-jobs pick alternates when idle ties go to the lowest index)
            np.testing.assert_array_equal(_audio(eng, emb=emb), expected)
        eng.stop_vocoder_batching()
        assert [eng._batch(w, None) for w in eng._workers] == [False, False]
    finally:
        eng.close()
    assert all(not w.proc.is_alive() for w in eng._workers), [(w.index, w.proc.pid, w.proc.exitcode, w.ready) for w in eng._workers]
    with pytest.raises(BusyError, match="shutting down"):
        eng.embed(voice_like(3.0, 140.0), 16000)


def test_worker_loading_errors_and_bad_counts(tmp_path):
    with pytest.raises(CheckpointError, match="synthesizer.pt"):
        WorkerEngine(functools.partial(make_engine, str(tmp_path)), workers=2)
    for bad in ({"workers": 0}, {"workers": True}, {"threads": 0}):
        with pytest.raises(OptionsError):
            WorkerEngine(functools.partial(tiny_cloner, 1), **bad)


def test_server_streams_through_workers(engine, local, tmp_path):
    import urllib.request

    from rtclone.serve.metrics import parse_metrics

    ref = voice_like(3.0, 140.0)

    async def main():
        async with running_server(engine, voices_dir=tmp_path) as srv:
            async with await Client.connect(f"ws://127.0.0.1:{srv.port}") as client:
                voice_id = (await client.enrol(wav_bytes(ref), "v"))["voice_id"]
                said = await client.say(TEXT, voice_id=voice_id, options={"seed": 3, "backend": "torch"})
                _, stored = srv.registry.get(voice_id)
            url = f"http://127.0.0.1:{srv.port}/metrics"
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
            return said, stored, parse_metrics(text)

    said, stored, metrics = run(main(), timeout=120)
    assert metrics["rtclone_synthesis_workers"] == metrics["rtclone_synthesis_workers_ready"] == 2
    assert metrics["rtclone_synthesis_worker_deaths_total"] == 0
    expected = local.clone(TEXT, stored, OPTS).audio
    assert said.audio.shape == expected.shape
    assert np.max(np.abs(said.audio - expected)) <= 1.5 / 32767  # PCM16 on the wire


def test_serve_chooses_worker_processes(monkeypatch):
    """`rtclone serve` runs synthesis in one process per core (at most 4) unless --workers says otherwise, and
    computes 4 streams at once per process unless --max-streams says otherwise."""
    import torch

    from rtclone.cli import main
    from rtclone.serve import server

    seen = []
    monkeypatch.setattr(server, "run_server", lambda **kw: seen.append((kw["workers"], kw["limits"].max_streams)))
    monkeypatch.setattr(server, "default_workers", lambda: 3)
    before = torch.get_num_threads()
    try:
        assert main(["serve"]) == 0
        assert main(["serve", "--workers", "1"]) == 0
        assert main(["serve", "--workers", "2", "--max-streams", "5"]) == 0
        assert main(["serve", "--workers", "0"]) == OptionsError.exit_status
    finally:
        torch.set_num_threads(before)
    assert seen == [(3, 12), (1, 4), (2, 5)]
    monkeypatch.undo()
    assert 1 <= server.default_workers() <= min(4, os.cpu_count() or 1)


def test_server_py_runs_the_server_only_as_the_main_script(monkeypatch):
    """Spawned workers import the parent's main file as ``__mp_main__``: ``python server.py`` must not serve again then."""
    import runpy
    from pathlib import Path

    import rtclone.cli

    calls = []
    monkeypatch.setattr(rtclone.cli, "main", lambda argv: calls.append(argv) or 0)
    path = str(Path(__file__).resolve().parents[1] / "server.py")
    runpy.run_path(path, run_name="__mp_main__")
    assert calls == []
    monkeypatch.setattr("sys.argv", ["server.py", "--port", "9"])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(path, run_name="__main__")
    assert info.value.code == 0 and calls == [["serve", "--port", "9"]]


class BuggyEngine(FakeEngine):
    """A fake engine with a bug (not an rtclone error) on the text "bug"; spawned workers import it from here."""

    def stream(self, text, embedding, options=SynthesisOptions()):
        if text == "bug":
            raise ValueError("an engine bug")
        return super().stream(text, embedding, options)


def test_an_engine_bug_in_a_worker_is_an_internal_error_and_the_server_serves_on(tmp_path):
    import urllib.request

    from rtclone.serve.metrics import parse_metrics

    eng = WorkerEngine(BuggyEngine, workers=2)
    try:
        with pytest.raises(RuntimeError, match="ValueError in a synthesis worker: an engine bug"):
            list(eng.stream("bug", np.ones(256, np.float32) / 16))

        async def main():
            async with running_server(eng, voices_dir=tmp_path) as srv:
                async with await Client.connect(f"ws://127.0.0.1:{srv.port}") as client:
                    voice_id = (await client.enrol(wav_bytes(voice_like(2.0, 150.0)), "v"))["voice_id"]
                    with pytest.raises(ServerError, match="internal|bug"):
                        await client.say("bug", voice_id=voice_id)
                    said = await client.say("fine words", voice_id=voice_id)
                url = f"http://127.0.0.1:{srv.port}/metrics"
                text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
                return said, parse_metrics(text)

        said, metrics = run(main(), timeout=60)
        assert said.audio.size > 0 and metrics['rtclone_errors_total{code="internal"}'] == 1
        assert metrics["rtclone_synthesis_workers_ready"] == 2 and metrics["rtclone_synthesis_worker_deaths_total"] == 0
    finally:
        eng.close()
