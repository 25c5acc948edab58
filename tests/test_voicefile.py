import numpy as np
import pytest

from rtclone.errors import FileFormatError
from rtclone.voicefile import decode_embedding, encode_embedding, load_embedding, save_embedding


def test_round_trip_is_exact(tmp_path):
    emb = np.random.default_rng(1).standard_normal(256).astype(np.float32)
    path = save_embedding(tmp_path / "v.voice", emb, {"name": "x"})
    back, meta = load_embedding(path)
    assert back.dtype == np.float32 and np.array_equal(back, emb)
    assert meta == {"name": "x"}
    assert not list(tmp_path.glob("*.tmp"))


def test_plain_npy_is_accepted(tmp_path):
    emb = np.linspace(-1, 1, 256, dtype=np.float32)
    np.save(tmp_path / "e.npy", emb)
    back, _ = load_embedding(tmp_path / "e.npy")
    assert np.array_equal(back, emb)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda b: b"XXXXXXXX" + b[8:], "magic"),
        (lambda b: b[:8] + b"\x09\x00" + b[10:], "version"),
        (lambda b: b[:-4], "expected 256"),
        (lambda b: b[:20], "truncated"),
        (lambda b: b"", "magic"),
    ],
)
def test_corrupt_files_are_typed_errors(mutate, match):
    data = encode_embedding(np.ones(256, dtype=np.float32))
    with pytest.raises(FileFormatError, match=match):
        decode_embedding(mutate(data))


def test_non_finite_embedding_is_refused():
    with pytest.raises(FileFormatError):
        encode_embedding(np.array([1.0, np.nan], dtype=np.float32))


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FileFormatError):
        load_embedding(tmp_path / "o.npy")
