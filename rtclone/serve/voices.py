"""The server's persistent voice registry: one versioned voice file per voice in a folder.

Each voice is ``<voice_id>.voice`` written by :func:`rtclone.voicefile.save_embedding` (a temp
file, fsync, rename) followed by an fsync of the folder, so a voice is either fully there or not
at all, even after a kill -9 or a power cut during the write. Leftover temp files are removed on
open; a file that cannot be read is skipped (and reported in ``skipped``), never fatal.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FileFormatError, LimitExceededError, ProtocolError, VoiceNotFoundError
from ..voicefile import load_embedding, save_embedding

log = logging.getLogger("rtclone.serve")

SUFFIX = ".voice"
_ID_RE = re.compile(r"^v_[0-9a-f]{16}$")
MAX_NAME_CHARS = 64


@dataclass(frozen=True)
class VoiceInfo:
    """What the registry knows about one voice (the embedding is kept beside it)."""

    voice_id: str
    name: str  # user-given label (not unique)
    created: float  # UNIX time of enrolment
    duration_s: float  # seconds of reference audio it was made from
    dim: int  # embedding size

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_name(name: str) -> str:
    """A voice name: 1-64 printable characters (stripped)."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise ProtocolError(f"a voice name must be 1-{MAX_NAME_CHARS} printable characters")
    return name


class VoiceRegistry:
    """Voices on disk in ``folder`` with an in-memory index; safe to use from several threads."""

    def __init__(self, folder: str | Path, max_voices: int = 10_000) -> None:
        self.folder = Path(folder)
        self.max_voices = max_voices
        self.skipped: list[str] = []  # files that could not be read at open
        self._lock = threading.Lock()
        self._voices: dict[str, tuple[VoiceInfo, np.ndarray]] = {}
        self.folder.mkdir(parents=True, exist_ok=True)
        self._load()

    def _load(self) -> None:
        for tmp in self.folder.glob(f"*{SUFFIX}.tmp"):  # a write that never reached its rename
            tmp.unlink(missing_ok=True)
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            voice_id = path.name[: -len(SUFFIX)]
            try:
                if not _ID_RE.match(voice_id):
                    raise FileFormatError(f"{path.name}: not a voice id")
                emb, meta = load_embedding(path)
                info = VoiceInfo(
                    voice_id=voice_id,
                    name=str(meta.get("name", voice_id)),
                    created=float(meta.get("created", path.stat().st_mtime)),
                    duration_s=float(meta.get("duration_s", 0.0)),
                    dim=int(emb.shape[0]),
                )
            except (FileFormatError, ValueError, TypeError) as exc:
                log.warning("voice registry: skipping %s (%s)", path.name, exc)
                self.skipped.append(path.name)
                continue
            self._voices[voice_id] = (info, emb)

    def __len__(self) -> int:
        return len(self._voices)

    def add(self, embedding: np.ndarray, name: str, duration_s: float) -> VoiceInfo:
        """Store a new voice durably and return its info (with a fresh random ``voice_id``)."""
        name = check_name(name)
        emb = np.asarray(embedding, dtype=np.float32)
        with self._lock:
            if len(self._voices) >= self.max_voices:
                raise LimitExceededError(f"the registry holds its maximum of {self.max_voices} voices")
            voice_id = "v_" + secrets.token_hex(8)
            while voice_id in self._voices:
                voice_id = "v_" + secrets.token_hex(8)
            info = VoiceInfo(voice_id, name, time.time(), round(float(duration_s), 3), int(emb.shape[0]))
            meta = {"name": name, "created": info.created, "duration_s": info.duration_s}
            save_embedding(self.folder / f"{voice_id}{SUFFIX}", emb, meta)
            _fsync_dir(self.folder)
            self._voices[voice_id] = (info, emb.copy())
        return info

    def get(self, voice_id: str) -> tuple[VoiceInfo, np.ndarray]:
        """(info, embedding) of a voice; VoiceNotFoundError if unknown."""
        try:
            info, emb = self._voices[voice_id]
        except KeyError:
            raise VoiceNotFoundError(f"no voice with id {voice_id!r}") from None
        return info, emb.copy()

    def list(self) -> list[VoiceInfo]:
        """All voices, oldest first."""
        return sorted((info for info, _ in list(self._voices.values())), key=lambda i: (i.created, i.voice_id))

    def delete(self, voice_id: str) -> None:
        """Remove a voice from disk and memory; VoiceNotFoundError if unknown."""
        with self._lock:
            if voice_id not in self._voices:
                raise VoiceNotFoundError(f"no voice with id {voice_id!r}")
            (self.folder / f"{voice_id}{SUFFIX}").unlink(missing_ok=True)
            _fsync_dir(self.folder)
            del self._voices[voice_id]


def _fsync_dir(folder: Path) -> None:
    """Make a rename/unlink in ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
