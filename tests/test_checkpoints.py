"""Checkpoint reading: format/kind detection and the typed errors for bad files."""

import pickle

import pytest
import torch

from rtclone.checkpoints import parse_checkpoint, read_checkpoint, resemblyzer_weights_path
from rtclone.errors import CheckpointError


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pt")


def test_garbage_file(tmp_path):
    p = tmp_path / "junk.pt"
    p.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(p)


def test_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"model_state": Evil()}, f)
    with pytest.raises(CheckpointError):
        read_checkpoint(p)


@pytest.mark.parametrize(
    "obj, match",
    [
        ([1, 2, 3], "expected a dict"),
        ({"foo": 1}, "no 'model_state'"),
        ({"model_state": {"x": torch.zeros(1)}}, "unrecognised"),
        ({"format": "rtclone", "version": 99, "kind": "encoder", "dims": {}, "model_state": {}}, "version 99"),
        ({"format": "rtclone", "version": 1, "kind": "teapot", "dims": {}, "model_state": {}}, "unknown model kind"),
    ],
)
def test_bad_layouts(obj, match):
    with pytest.raises(CheckpointError, match=match):
        parse_checkpoint(obj)


def test_resemblyzer_weights_are_found_in_the_installed_package():
    path = resemblyzer_weights_path()
    assert path.name == "pretrained.pt" and path.stat().st_size > 5_000_000
    ckpt = read_checkpoint(path)
    assert (ckpt.kind, ckpt.format) == ("encoder", "resemblyzer")
    assert len(ckpt.model_state) == 16
    assert ckpt.meta["step"] == 1564501
