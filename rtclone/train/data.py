"""Speaker-folder datasets and the GE2E batch sampler.

Layouts read (the speaker is always the first folder level under the root):

- LibriSpeech: ``root/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` with
  ``<speaker>-<chapter>.trans.txt`` (one ``<utterance-id> TRANSCRIPT`` per line) in each chapter;
- VoxCeleb: ``root/id<NNNNN>/<video>/<NNNNN>.wav`` (no transcripts);
- flat: ``root/<speaker>/*.wav`` (or flac/ogg/mp3), optionally with a ``<stem>.txt`` transcript
  beside each audio file.

Mels for training are computed once per file and cached as ``.npy`` files (keyed by the file's
path, size and modification time) so that a run and its resumption read them cheaply.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import AudioError, InputShapeError, OptionsError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


@dataclass(frozen=True)
class Utterance:
    """One transcribed recording."""

    audio: Path  # the audio file
    text: str  # its transcript
    speaker: str  # the speaker folder's name


def _is_audio(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")


def speaker_files(root: str | Path) -> dict[str, list[Path]]:
    """``{speaker: sorted audio files}`` for a LibriSpeech, VoxCeleb or flat speaker-folder root.

    Every audio file anywhere below ``root/<speaker>/`` belongs to that speaker; speakers without
    audio are left out. Raises InputShapeError when the root holds no speaker folder with audio.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputShapeError(f"dataset root is not a directory: {root}")
    out: dict[str, list[Path]] = {}
    for spk_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in spk_dir.rglob("*") if _is_audio(p))
        if files:
            out[spk_dir.name] = files
    if not out:
        raise InputShapeError(f"{root}: no speaker folders with audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return out


def _librispeech_transcripts(chapter_dir: Path) -> dict[str, str]:
    texts: dict[str, str] = {}
    for trans in chapter_dir.glob("*.trans.txt"):
        for line in trans.read_text(encoding="utf-8").splitlines():
            utt_id, _, text = line.strip().partition(" ")
            if utt_id and text:
                texts[utt_id] = text.strip()
    return texts


def transcribed_items(root: str | Path) -> list[Utterance]:
    """Every (audio, transcript, speaker) of a root whose files have transcripts.

    Transcripts come from LibriSpeech ``*.trans.txt`` files or from a ``<stem>.txt`` beside the
    audio; files without a transcript are skipped. Raises InputShapeError if none has one.
    """
    items: list[Utterance] = []
    chapter_cache: dict[Path, dict[str, str]] = {}
    for speaker, files in speaker_files(root).items():
        for f in files:
            if f.parent not in chapter_cache:
                chapter_cache[f.parent] = _librispeech_transcripts(f.parent)
            text = chapter_cache[f.parent].get(f.stem)
            side = f.with_suffix(".txt")
            if text is None and side.is_file():
                text = " ".join(side.read_text(encoding="utf-8").split())
            if text:
                items.append(Utterance(f, text, speaker))
    if not items:
        raise InputShapeError(f"{root}: no transcripts found (LibriSpeech *.trans.txt or <stem>.txt files)")
    return items


class MelStore:
    """Encoder mels of audio files, computed on first use and cached as ``.npy`` under ``cache_dir``."""

    def __init__(self, cache_dir: str | Path | None = None, featurize: Callable[[Path], np.ndarray] | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._featurize = featurize or _default_featurize
        self._memory: dict[Path, np.ndarray] = {}

    def _key(self, path: Path) -> str:
        st = path.stat()
        return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]

    def get(self, path: str | Path) -> np.ndarray:
        """The (T, 40) float32 mel of a file (cached in memory when no cache_dir is set)."""
        path = Path(path)
        if self.cache_dir is None:
            if path not in self._memory:
                self._memory[path] = self._featurize(path)
            return self._memory[path]
        cached = self.cache_dir / f"{self._key(path)}.npy"
        if cached.is_file():
            return np.load(cached, allow_pickle=False)
        mel = self._featurize(path)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.stem + ".tmp.npy")
        np.save(tmp, mel, allow_pickle=False)
        tmp.replace(cached)
        return mel


def _default_featurize(path: Path) -> np.ndarray:
    from ..audio import encoder_mel, preprocess_wav

    return encoder_mel(preprocess_wav(path))  # (T, 40)


def usable_speakers(mels: dict[str, list[np.ndarray]], min_utterances: int, partial_frames: int) -> dict[str, list[np.ndarray]]:
    """Keep utterances at least ``partial_frames`` long, and speakers with ``min_utterances`` of them."""
    out = {}
    for spk, ms in mels.items():
        long_enough = [m for m in ms if m.shape[0] >= partial_frames]
        if len(long_enough) >= min_utterances:
            out[spk] = long_enough
    return out


def load_speaker_mels(files: dict[str, list[Path]], store: MelStore, progress: bool = False) -> dict[str, list[np.ndarray]]:
    """Mels of every file (unusable files — silent, corrupt — are skipped)."""
    from tqdm import tqdm

    mels: dict[str, list[np.ndarray]] = {}
    pairs = [(s, f) for s, fs in files.items() for f in fs]
    for spk, f in tqdm(pairs, desc="mels", unit="file", disable=not progress):
        try:
            mels.setdefault(spk, []).append(store.get(f))
        except AudioError:
            continue
    return mels


class GE2EBatchSampler:
    """Random GE2E batches: S speakers × U utterances, one random ``partial_frames`` crop each.

    ``sample(step)`` returns a (S * U, partial_frames, n_mels) float32 array ordered speaker-major
    (the first U rows are speaker 0). Batch ``step`` depends only on (seed, step), so a resumed
    training run sees exactly the batches an uninterrupted one would.
    """

    def __init__(self, mels: dict[str, list[np.ndarray]], speakers_per_batch: int, utterances_per_speaker: int,
                 partial_frames: int = 160, seed: int = 0) -> None:
        if speakers_per_batch < 2 or utterances_per_speaker < 2:
            raise OptionsError("GE2E needs at least 2 speakers per batch and 2 utterances per speaker")
        self.mels = usable_speakers(mels, utterances_per_speaker, partial_frames)
        if len(self.mels) < speakers_per_batch:
            raise OptionsError(f"{len(self.mels)} speakers have >= {utterances_per_speaker} utterances of "
                               f">= {partial_frames} frames; {speakers_per_batch} are needed per batch")
        self.speakers = sorted(self.mels)
        self.n_mels = int(self.mels[self.speakers[0]][0].shape[1])
        self.S, self.U, self.P, self.seed = speakers_per_batch, utterances_per_speaker, partial_frames, seed

    def sample(self, step: int) -> np.ndarray:
        """Batch number ``step``: (S * U, P, n_mels) float32."""
        rng = np.random.default_rng([self.seed, step])
        out = []
        for si in rng.choice(len(self.speakers), self.S, replace=False):
            utts = self.mels[self.speakers[si]]
            for ui in rng.choice(len(utts), self.U, replace=False):
                m = utts[ui]
                start = int(rng.integers(0, m.shape[0] - self.P + 1))
                out.append(m[start : start + self.P])
        return np.stack(out).astype(np.float32, copy=False)
