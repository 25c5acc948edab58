"""Writing wav files chunk by chunk (``rtclone clone`` streams its output through :class:`WavWriter`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE, pcm16_bytes
from .errors import FileSystemError


class WavWriter:
    """A mono PCM16 wav written chunk by chunk (``with WavWriter(path) as w: w.write(chunk)``) into a temporary
    file in the same folder, renamed to ``path`` when the block ends without an error and removed when it
    raises: a long synthesis never holds all its audio in memory, and a failed one leaves no partial file."""

    def __init__(self, path: str | Path, sr: int = SAMPLE_RATE) -> None:
        self.path, self.sr, self.samples = Path(path), int(sr), 0

    def __enter__(self) -> "WavWriter":
        import soundfile as sf

        try:
            fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError as exc:
            raise FileSystemError(f"cannot write {self.path}: {exc.strerror}") from exc
        try:
            self._file = os.fdopen(fd, "w+b")
            self._sf = sf.SoundFile(self._file, "w", self.sr, 1, subtype="PCM_16", format="WAV")
        except BaseException:
            Path(self._tmp).unlink(missing_ok=True)
            raise
        return self

    def write(self, wav: np.ndarray) -> None:
        """Append float samples in [-1, 1] (clipped), as ``pcm16_bytes`` quantises them."""
        pcm = np.frombuffer(pcm16_bytes(wav), dtype="<i2")
        self._sf.write(pcm)
        self.samples += len(pcm)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._sf.close()
            self._file.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            Path(self._tmp).unlink(missing_ok=True)
