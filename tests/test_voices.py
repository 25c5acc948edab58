"""The persistent voice registry: durability, atomic writes, kill -9 during writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rtclone.errors import LimitExceededError, ProtocolError, VoiceNotFoundError
from rtclone.serve.voices import VoiceRegistry
from rtclone.voicefile import encode_embedding


def unit(seed: int) -> np.ndarray:
    e = np.random.default_rng(seed).standard_normal(256).astype(np.float32)
    return e / np.linalg.norm(e)


def test_add_get_list_delete_survive_a_restart(tmp_path):
    reg = VoiceRegistry(tmp_path)
    a = reg.add(unit(1), "alice", 3.21)
    b = reg.add(unit(2), "  bob ", 4.0)
    assert a.voice_id != b.voice_id and a.voice_id.startswith("v_") and b.name == "bob"
    reg2 = VoiceRegistry(tmp_path)  # a new process would see the same
    assert [v.voice_id for v in reg2.list()] == [a.voice_id, b.voice_id]
    info, emb = reg2.get(a.voice_id)
    assert info == a and np.array_equal(emb, unit(1)) and info.duration_s == 3.21
    reg2.delete(a.voice_id)
    with pytest.raises(VoiceNotFoundError):
        reg2.get(a.voice_id)
    with pytest.raises(VoiceNotFoundError):
        reg2.delete(a.voice_id)
    assert [v.voice_id for v in VoiceRegistry(tmp_path).list()] == [b.voice_id]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{b.voice_id}.voice"]


def test_leftovers_and_foreign_files_are_skipped_not_fatal(tmp_path):
    good = VoiceRegistry(tmp_path).add(unit(3), "good", 1.0)
    (tmp_path / "v_00000000000000aa.voice.tmp").write_bytes(encode_embedding(unit(4))[:30])  # torn write
    (tmp_path / "v_00000000000000bb.voice").write_bytes(b"RTCVOICE garbage")
    (tmp_path / "notes.voice").write_bytes(encode_embedding(unit(5)))
    reg = VoiceRegistry(tmp_path)
    assert [v.voice_id for v in reg.list()] == [good.voice_id]
    assert sorted(reg.skipped) == ["notes.voice", "v_00000000000000bb.voice"]
    assert not (tmp_path / "v_00000000000000aa.voice.tmp").exists()


def test_names_and_capacity_are_checked(tmp_path):
    reg = VoiceRegistry(tmp_path, max_voices=1)
    for bad in ("", "   ", "x" * 65, "tab\there"):
        with pytest.raises(ProtocolError):
            reg.add(unit(0), bad, 1.0)
    reg.add(unit(0), "one", 1.0)
    with pytest.raises(LimitExceededError):
        reg.add(unit(1), "two", 1.0)


WRITER = """
import sys, numpy as np
from rtclone.serve.voices import VoiceRegistry
reg = VoiceRegistry(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    e = np.random.default_rng(i).standard_normal(256).astype(np.float32)
    reg.add(e / np.linalg.norm(e), f"voice {i}", float(i))
    i += 1
"""


@pytest.mark.parametrize("delay", [0.05, 0.2])
def test_kill_9_during_writes_leaves_a_consistent_registry(tmp_path, delay):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    reg = VoiceRegistry(tmp_path)
    voices = reg.list()
    assert len(voices) >= 1 and reg.skipped == []
    # writes are sequential, so what survives is exactly the first k voices, none half-written
    assert sorted(int(v.name.split()[1]) for v in voices) == list(range(len(voices)))
    for v in voices:  # every voice that is listed is whole and is the one that was written
        i = int(v.name.split()[1])
        e = np.random.default_rng(i).standard_normal(256).astype(np.float32)
        np.testing.assert_allclose(reg.get(v.voice_id)[1], e / np.linalg.norm(e), rtol=1e-6)
        assert v.duration_s == float(i)
    assert not list(tmp_path.glob("*.tmp"))
