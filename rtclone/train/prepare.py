"""Synthesizer data preparation: a corpus → mels, speaker embeddings and trimmed audio on disk.

The layout is in :mod:`rtclone.train.synthesizer`'s docstring; :func:`prepare_synthesizer_data`
writes it, :func:`read_metadata` reads its index.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import AudioError, InputShapeError, OptionsError, TextError

DATA_FORMAT, DATA_VERSION = "rtclone-synth-data", 1


def synthesizer_items(src: str | Path, split: str = "train") -> list[Any]:
    """(audio, transcript, speaker) items of a corpus root (``split="eval"``: the built-in corpus's
    held-out voices and sentences, for a validation loss; other layouts have only "train").

    VCTK (``txt/<spk>/*.txt`` beside ``wav48*/<spk>/*``) and LibriTTS (``<stem>.normalized.txt``)
    are recognised here; every other layout (LibriSpeech, the built-in corpus
    ``root/speaker/chapter/*.flac + *.trans.txt``, flat ``<stem>.txt``) is read by
    :func:`rtclone.train.data.transcribed_items`.
    """
    from .data import AUDIO_EXTENSIONS, Utterance, transcribed_items

    src = Path(src)
    if not src.is_dir():
        raise InputShapeError(f"dataset root is not a directory: {src}")
    if split not in ("train", "eval"):
        raise OptionsError(f"split must be 'train' or 'eval', got {split!r}")
    if (src / "manifest.json").is_file():  # the built-in corpus: held-out voices/sentences only in "eval"
        from ..corpus import list_utterances

        return [Utterance(Path(u["path"]), u["text"], str(u["speaker"])) for u in list_utterances(src, split)]
    if split != "train":
        raise OptionsError(f"{src}: only the built-in corpus (manifest.json) has an eval split")
    wav_roots = sorted(p for p in src.glob("wav48*") if p.is_dir())
    if (src / "txt").is_dir() and wav_roots:  # VCTK
        items = []
        for audio in sorted(a for a in wav_roots[0].rglob("*") if a.suffix.lower() in AUDIO_EXTENSIONS):
            if audio.stem.endswith("_mic2"):  # VCTK 0.92 has two microphones: keep mic1
                continue
            txt = src / "txt" / audio.parent.name / f"{audio.stem.removesuffix('_mic1')}.txt"
            if txt.is_file():
                items.append(Utterance(audio, " ".join(txt.read_text(encoding="utf-8").split()), audio.parent.name))
        if items:
            return items
    libritts = sorted(src.rglob("*.normalized.txt"))
    if libritts:
        items = []
        for txt in libritts:
            audio = txt.with_name(txt.name.removesuffix(".normalized.txt") + ".wav")
            if audio.is_file():
                items.append(Utterance(audio, " ".join(txt.read_text(encoding="utf-8").split()), txt.relative_to(src).parts[0]))
        if items:
            return items
    return transcribed_items(src)


def _safe_id(speaker: str, stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{speaker}-{stem}")


def prepare_synthesizer_data(src: str | Path, out: str | Path, encoder: torch.nn.Module | None = None, *,
                             max_frames: int = 900, progress: bool = False, split: str = "train",
                             jobs: int = 1) -> dict[str, Any]:  # fmt: skip
    """Prepare a corpus for synthesizer training (the layout: :mod:`rtclone.train.synthesizer`).

    Each utterance is VAD-trimmed (:func:`rtclone.audio.preprocess_wav`), turned into a synth mel
    and embedded with ``encoder`` (default: :func:`rtclone.checkpoints.load_encoder`). Items whose
    audio is unusable, whose text has nothing speakable, or longer than ``max_frames`` are
    skipped. Existing outputs are reused, so a grown corpus costs only its new utterances; when
    ``out`` already holds exactly the corpus's (id, text) items, nothing is read at all (cheap
    enough to call before every training run). ``jobs`` > 1 computes the missing items in that many
    forked processes (one thread each); the files and the metadata are the same as with one.
    Returns ``{"items": n, "skipped": n, "out": path}``.
    """
    from tqdm import tqdm

    from ..checkpoints import load_encoder
    from ..text import text_to_ids

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise OptionsError(f"jobs must be a positive integer, got {jobs!r}")
    out = Path(out)
    items = synthesizer_items(src, split)
    wanted = {(_safe_id(it.speaker, it.audio.stem), it.text) for it in items}
    old = _read_json(out / "metadata.json")
    known_bad: set[tuple[str, str]] = set()  # skipped last time with the same text and limit: not read again
    if old.get("format") == DATA_FORMAT and old.get("max_frames") == max_frames and isinstance(old.get("skipped_items"), list):
        known_bad = {tuple(x) for x in old["skipped_items"]}
        if {(i["id"], i["text"]) for i in old["items"]} | known_bad == wanted:
            return {"items": len(old["items"]), "skipped": len(known_bad), "out": str(out)}
    if encoder is None:
        encoder = load_encoder()
    for sub in ("mels", "embeds", "audio"):
        (out / sub).mkdir(parents=True, exist_ok=True)

    def paths_of(uid: str) -> dict[str, Path]:
        return {k: out / k / f"{uid}.npy" for k in ("mels", "embeds", "audio")}

    # items to compute: neither known to be unusable nor already on disk
    todo = {uid: (it, paths_of(uid)) for it in items for uid in [_safe_id(it.speaker, it.audio.stem)]
            if (uid, it.text) not in known_bad and not all(p.is_file() for p in paths_of(uid).values())}
    unusable: set[str] = set()  # ids the workers found unusable
    pooled = jobs > 1 and len(todo) > 1
    if pooled:
        import multiprocessing

        global _POOL_ENCODER
        _POOL_ENCODER = encoder  # inherited by the forked workers
        try:
            with multiprocessing.get_context("fork").Pool(jobs, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                results = pool.imap(_prepare_job, [(it, p, max_frames) for it, p in todo.values()], chunksize=8)
                for uid, ok in zip(todo, tqdm(results, total=len(todo), desc=f"prepare ({jobs} jobs)", unit="utt",
                                              disable=not progress)):  # fmt: skip
                    if not ok:
                        unusable.add(uid)
        finally:
            _POOL_ENCODER = None
        todo = {}
    kept, skipped = [], []
    for item in tqdm(items, desc="prepare", unit="utt", disable=not progress or pooled):
        uid = _safe_id(item.speaker, item.audio.stem)
        paths = paths_of(uid)
        if (uid, item.text) in known_bad or uid in unusable:
            skipped.append([uid, item.text])
            continue
        try:
            text_to_ids(item.text)
            if uid in todo and not _prepare_item(item, paths, encoder, max_frames):
                skipped.append([uid, item.text])
                continue
            mel, wav = np.load(paths["mels"], mmap_mode="r"), np.load(paths["audio"], mmap_mode="r")
        except (AudioError, TextError):
            skipped.append([uid, item.text])
            continue
        kept.append({"id": uid, "speaker": item.speaker, "text": item.text, "frames": int(mel.shape[1]),
                     "samples": int(wav.shape[0])})
    if not kept:
        raise InputShapeError(f"{src}: no usable utterances ({len(skipped)} skipped)")
    meta = {"format": DATA_FORMAT, "version": DATA_VERSION, "items": kept, "skipped_items": skipped,
            "max_frames": max_frames}
    tmp = out / "metadata.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(out / "metadata.json")
    return {"items": len(kept), "skipped": len(skipped), "out": str(out)}


_POOL_ENCODER: Any = None  # the encoder of a parallel preparation (set before its workers fork)


def _prepare_item(item: Any, paths: dict[str, Path], encoder: Any, max_frames: int) -> bool:
    """Compute and save one utterance's mel, embedding and trimmed audio; False when it is unusable
    (unspeakable text, unreadable or silent audio, longer than ``max_frames``): nothing is saved then."""
    from ..audio import preprocess_wav, synth_mel
    from ..encoder import embed_utterance
    from ..text import text_to_ids

    try:
        text_to_ids(item.text)
        wav = preprocess_wav(item.audio)
        mel = synth_mel(wav)  # (80, T)
        if mel.shape[1] > max_frames:
            return False
        emb = embed_utterance(encoder, wav)  # (256,)
    except (AudioError, TextError):
        return False
    for key, arr in (("mels", mel), ("embeds", emb), ("audio", wav)):
        np.save(paths[key], np.asarray(arr, dtype=np.float32), allow_pickle=False)
    return True


def _prepare_job(job: tuple[Any, dict[str, Path], int]) -> bool:
    item, paths, max_frames = job
    return _prepare_item(item, paths, _POOL_ENCODER, max_frames)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_metadata(prepared_dir: str | Path) -> list[dict[str, Any]]:
    """The items of a prepared directory (raises InputShapeError on a missing/foreign file)."""
    path = Path(prepared_dir) / "metadata.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputShapeError(f"{path}: not a prepared synthesizer directory ({exc})") from exc
    if meta.get("format") != DATA_FORMAT or not isinstance(meta.get("version"), int) or meta["version"] > DATA_VERSION:
        raise InputShapeError(f"{path}: unsupported format {meta.get('format')!r} version {meta.get('version')!r}")
    return list(meta["items"])
