"""Versioned voice files: a speaker embedding plus metadata, safe to read from anyone.

Layout (little-endian): magic ``b"RTCVOICE"`` (8 bytes), format version (uint16), header length
(uint32), a UTF-8 JSON header ``{"dim": 256, "dtype": "float32", "meta": {...}}``, then ``dim``
float32 values. No pickle. ``load_embedding`` also accepts a plain ``.npy`` array (read with
``allow_pickle=False``) so embeddings made elsewhere can be used.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FileFormatError, FileSystemError, InputShapeError

MAGIC = b"RTCVOICE"
VERSION = 1
_HEAD = struct.Struct("<8sHI")
MAX_HEADER = 1 << 16
EMBEDDING_DIM = 256  # the speaker encoder's, which every engine conditions on


def encode_embedding(embedding: np.ndarray, meta: dict[str, Any] | None = None) -> bytes:
    """Serialise a 1-D finite embedding and JSON-able metadata."""
    emb = np.asarray(embedding, dtype=np.float32)
    if emb.ndim != 1 or emb.size == 0 or not np.all(np.isfinite(emb)):
        raise FileFormatError(f"an embedding must be a finite 1-D vector, got shape {emb.shape}")
    header = json.dumps({"dim": int(emb.size), "dtype": "float32", "meta": meta or {}}).encode()
    return _HEAD.pack(MAGIC, VERSION, len(header)) + header + emb.tobytes()


def decode_embedding(data: bytes, source: str = "<bytes>") -> tuple[np.ndarray, dict[str, Any]]:
    """Parse bytes made by :func:`encode_embedding`; raises FileFormatError naming the problem."""
    if data[:8] != MAGIC:
        raise FileFormatError(f"{source}: not an rtclone voice file (bad magic)")
    if len(data) < _HEAD.size:
        raise FileFormatError(f"{source}: truncated voice file ({len(data)} bytes)")
    _, version, hlen = _HEAD.unpack_from(data)
    if version > VERSION:
        raise FileFormatError(f"{source}: voice file version {version} is newer than this rtclone reads ({VERSION})")
    if hlen > MAX_HEADER or _HEAD.size + hlen > len(data):
        raise FileFormatError(f"{source}: truncated or corrupt header")
    try:
        header = json.loads(data[_HEAD.size : _HEAD.size + hlen].decode())
        dim = int(header["dim"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FileFormatError(f"{source}: unreadable header ({exc})") from exc
    body = data[_HEAD.size + hlen :]
    if header.get("dtype") != "float32" or dim <= 0 or len(body) != 4 * dim:
        raise FileFormatError(f"{source}: expected {dim} float32 values, found {len(body)} bytes")
    emb = np.frombuffer(body, dtype=np.float32).copy()
    if not np.all(np.isfinite(emb)):
        raise FileFormatError(f"{source}: embedding holds non-finite values")
    return emb, dict(header.get("meta") or {})


def save_embedding(path: str | Path, embedding: np.ndarray, meta: dict[str, Any] | None = None) -> Path:
    """Write a voice file atomically (temp file + rename)."""
    path = Path(path)
    data = encode_embedding(embedding, meta)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise FileSystemError(f"cannot write {path}: {exc.strerror}") from exc
    return path


NPY_MAGIC = b"\x93NUMPY"


def _decode(data: bytes, source: str) -> tuple[np.ndarray, dict[str, Any]]:
    """A voice file's bytes, or a plain float ``.npy`` vector's, → (embedding, meta)."""
    if data.startswith(NPY_MAGIC):
        import io

        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise FileFormatError(f"{source}: unreadable .npy ({exc})") from exc
        return decode_embedding(encode_embedding(np.asarray(arr).reshape(-1)), source)
    return decode_embedding(data, source)


def load_embedding(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a voice file (or a plain float ``.npy`` vector)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot read ({exc.strerror})") from exc
    return _decode(data, str(path))


def read_voice(ref: str | Path | bytes) -> np.ndarray | None:
    """The embedding in ``ref`` when it is a voice file (this module's format or a ``.npy`` vector; a path or
    the file's bytes), judged by its first bytes, not its name; None when it is something else (e.g. audio)."""
    if isinstance(ref, (bytes, bytearray, memoryview)):
        data = bytes(ref)
        return _decode(data, "<bytes>")[0] if data.startswith((MAGIC, NPY_MAGIC)) else None
    try:
        with open(ref, "rb") as f:
            head = f.read(len(MAGIC))
    except OSError:
        return None  # a missing or unreadable file fails where audio is read, with the audio reader's message
    return load_embedding(ref)[0] if head.startswith((MAGIC, NPY_MAGIC)) else None


def unit_embedding(emb: np.ndarray, dim: int, source: str) -> np.ndarray:
    """A stored speaker embedding checked (shape ``(dim,)``, finite, not zero) and brought to unit length;
    InputShapeError naming ``source`` otherwise."""
    emb = np.asarray(emb, dtype=np.float32)
    if emb.shape != (dim,):
        raise InputShapeError(f"{source}: speaker embedding must have shape ({dim},), got {emb.shape}")
    norm = float(np.linalg.norm(emb))
    if not np.isfinite(norm) or norm < 1e-6:
        raise InputShapeError(f"{source}: the speaker embedding is zero or not finite")
    return (emb / norm).astype(np.float32)
