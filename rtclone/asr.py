"""Intelligibility measurement: pocketsphinx transcription and word error rate.

pocketsphinx ships an en-US acoustic model and CMUdict in its wheel, so this works offline. It
is a small, old recogniser: its WER on clean synthetic speech is ~0-13 % for flite's rms/slt
voices and much worse for others, which is why ``rtclone eval clone`` always reports the
ground-truth audio's WER next to the clone's (the ceiling on the same sentences).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import BackendUnavailableError, InputShapeError

__all__ = ["Transcriber", "word_errors", "word_error_rate", "error_kinds", "normalize_words", "WerCount"]

SAMPLE_RATE = 16000
SILENCE_PEAK = 1e-3  # audio whose peak stays below this (of full scale) is silence: no words


def _full_scale(wav: np.ndarray) -> float:
    kind = np.asarray(wav).dtype
    return float(np.iinfo(kind).max) if kind.kind in "iu" else 1.0


def normalize_words(text: str) -> list[str]:
    """Text → the words a recogniser could say: cleaned like synthesizer input (numbers and
    abbreviations spelled out, ASCII, lowercase), punctuation dropped (apostrophes kept)."""
    from .text import clean_text

    if not text.strip():
        return []
    return re.findall(r"[a-z']+", clean_text(text))


def _edit_kinds(reference: Sequence[str], hypothesis: Sequence[str]) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of one minimum-edit alignment of two word sequences;
    among equally short alignments the backtrace prefers a substitution, then a deletion."""
    d = [list(range(len(hypothesis) + 1))]
    for i, r in enumerate(reference, 1):
        row = [i] + [0] * len(hypothesis)
        for j, h in enumerate(hypothesis, 1):
            row[j] = min(d[i - 1][j] + 1, row[j - 1] + 1, d[i - 1][j - 1] + (r != h))
        d.append(row)
    i, j, kinds = len(reference), len(hypothesis), [0, 0, 0]
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            kinds[0] += int(reference[i - 1] != hypothesis[j - 1])
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            kinds[1], i = kinds[1] + 1, i - 1
        else:
            kinds[2], j = kinds[2] + 1, j - 1
    return kinds[0], kinds[1], kinds[2]


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance between two word sequences (substitutions + deletions + insertions)."""
    return sum(_edit_kinds(reference, hypothesis))


def error_kinds(reference: str, hypothesis: str) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of ``hypothesis`` against ``reference`` after
    :func:`normalize_words` on both, one minimum-edit alignment's: they sum to :func:`word_errors`."""
    return _edit_kinds(normalize_words(reference), normalize_words(hypothesis))


@dataclass(frozen=True)
class WerCount:
    """Word errors and reference words of one or more utterances (add them up, then divide)."""

    errors: int
    words: int

    @property
    def wer(self) -> float:
        return self.errors / self.words if self.words else 0.0

    def __add__(self, other: "WerCount") -> "WerCount":
        return WerCount(self.errors + other.errors, self.words + other.words)


def word_error_rate(reference: str, hypothesis: str) -> WerCount:
    """Errors of ``hypothesis`` against ``reference`` after :func:`normalize_words` on both."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    return WerCount(word_errors(ref, hyp), len(ref))


class Transcriber:
    """pocketsphinx's default en-US model; one decoder, used by one thread at a time.

    ``cache``: a JSON-lines file of transcripts keyed by a hash of the exact 16-bit PCM the decoder
    is given and the pocketsphinx version (created if missing, appended to, shared safely by
    concurrent evals). The decoder is deterministic (its feature state is reset per utterance), so a
    cached transcript is the one decoding would give; evals that hear the same recordings again
    (the ground truth of every ``rtclone eval clone`` run) skip half their decoding.
    """

    def __init__(self, cache: str | Path | None = None) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:  # pragma: no cover - a base dependency
            raise BackendUnavailableError("pocketsphinx is not installed") from exc
        self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        self._lock = threading.Lock()
        self._tag = f"pocketsphinx {_package_version('pocketsphinx')} {SAMPLE_RATE} default-model\n".encode()
        self.cache_path = Path(cache) if cache is not None else None
        self._cache: dict[str, str] = _read_transcript_cache(self.cache_path) if self.cache_path is not None else {}
        self.cache_hits = 0

    def transcribe(self, wav: np.ndarray, sr: int = SAMPLE_RATE) -> str:
        """float audio (mono, in [-1, 1]) at ``sr`` → lowercase words ('' for no speech)."""
        from .audio import ensure_wav

        if np.asarray(wav).size == 0 or np.max(np.abs(np.asarray(wav, dtype=np.float64))) < SILENCE_PEAK * _full_scale(wav):
            return ""  # pocketsphinx 'hears' a word or two in digital silence
        wav = ensure_wav(np.asarray(wav), sr)
        if wav.ndim != 1:
            raise InputShapeError(f"transcribe needs mono audio, got shape {wav.shape}")
        pcm = (np.clip(wav, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        key = hashlib.sha256(self._tag + pcm).hexdigest() if self.cache_path is not None else None
        with self._lock:
            if key is not None and key in self._cache:
                self.cache_hits += 1
                return self._cache[key]
            d = self._decoder
            d.reinit_feat()  # forget the previous utterance's noise and CMN estimates: same audio, same words
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            hyp = d.hyp()
            text = hyp.hypstr.strip().lower() if hyp is not None else ""
            if key is not None:
                self._cache[key] = text
                _append_transcript(self.cache_path, key, text)
        return text


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover - an unusual install
        return "unknown"


def _read_transcript_cache(path: Path) -> dict[str, str]:
    """The transcripts a cache file holds; lines that do not parse (a write cut short) are skipped."""
    out: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return out
    except (OSError, UnicodeDecodeError) as exc:
        raise InputShapeError(f"cannot read the transcript cache {path}: {exc}") from exc
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("key"), str) and isinstance(row.get("text"), str):
            out[row["key"]] = row["text"]
    return out


def _append_transcript(path: Path, key: str, text: str) -> None:
    # one os.write of one line with O_APPEND: concurrent evals appending to one cache do not interleave;
    # the line starts with its newline, so a line an earlier writer left unfinished cannot swallow it
    path.parent.mkdir(parents=True, exist_ok=True)
    line = ("\n" + json.dumps({"key": key, "text": text})).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
