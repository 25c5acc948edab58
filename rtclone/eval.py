"""Evaluation of the speaker encoder: equal error rate, speaker similarity, UMAP plots.

``eval_encoder`` embeds every utterance of a speaker-folder dataset (see
:mod:`rtclone.train.data` for the layouts), scores all same-speaker and different-speaker pairs
by cosine similarity and reports the equal error rate and the threshold at which it is reached
(the calibrated threshold ``rtclone verify`` uses; see ``rtclone.encoder.DEFAULT_VERIFY_THRESHOLD``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .encoder import EmbedOptions, SpeakerEncoder, embed_utterance, speaker_similarity
from .errors import AudioError, InputShapeError

__all__ = ["equal_error_rate", "speaker_similarity", "pair_scores", "eval_encoder", "plot_umap"]


def equal_error_rate(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> tuple[float, float]:
    """The equal error rate of a score set and the threshold reaching it: ``(eer, threshold)``.

    ``labels`` are True for target (same-speaker) trials; a trial is accepted when
    ``score >= threshold``. Over every distinct decision point, the EER is the mean of the false
    acceptance and false rejection rates where they are closest. The threshold returned lies
    midway between the accepted score and the next lower one.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    if s.shape != y.shape:
        raise InputShapeError(f"{s.size} scores but {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise InputShapeError("scores hold NaN or infinite values")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise InputShapeError(f"the EER needs both target and non-target trials (got {n_pos} and {n_neg})")
    order = np.argsort(-s, kind="stable")  # descending scores
    s, y = s[order], y[order]
    last_of_value = np.r_[s[1:] != s[:-1], True]  # accept everything down to each distinct value
    tp = np.cumsum(y)[last_of_value]
    fp = np.cumsum(~y)[last_of_value]
    values = s[last_of_value]  # (K,) distinct scores, descending
    far = np.r_[0.0, fp / n_neg]  # accept nothing, then down to each value
    frr = np.r_[1.0, 1.0 - tp / n_pos]
    i = int(np.argmin(np.abs(far - frr)))
    eer = float((far[i] + frr[i]) / 2.0)
    if i == 0:
        threshold = float(np.nextafter(values[0], np.inf))
    elif i < len(values):
        threshold = float((values[i - 1] + values[i]) / 2.0)
    else:
        threshold = float(values[-1])
    return eer, threshold


def pair_scores(embeddings: np.ndarray, speakers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores and same-speaker labels of all unordered pairs of embeddings (N, D)."""
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] != len(speakers):
        raise InputShapeError(f"expected ({len(speakers)}, D) embeddings, got {e.shape}")
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    iu = np.triu_indices(e.shape[0], k=1)
    spk = np.asarray(speakers)
    return (e @ e.T)[iu], spk[iu[0]] == spk[iu[1]]


def eval_encoder(model: SpeakerEncoder, data_dir: str | Path, *, options: EmbedOptions = EmbedOptions(),
                 max_utterances_per_speaker: int | None = None, umap_png: str | Path | None = None,
                 progress: bool = False) -> dict[str, Any]:
    """EER of ``model`` over a folder of speakers, with all same/different utterance pairs.

    Each file is preprocessed (:func:`rtclone.audio.preprocess_wav`) and embedded; unusable files
    (silent, too short, corrupt) are counted in ``skipped``. Returns a dict with ``eer``,
    ``threshold`` (cosine at the EER), ``n_speakers``, ``n_utterances``, ``n_same_pairs``,
    ``n_diff_pairs``, ``mean_same``, ``mean_diff``, ``skipped`` and ``umap_png`` (the plot
    written when ``umap_png`` is given, else None).
    """
    from tqdm import tqdm

    from .audio import preprocess_wav
    from .train.data import speaker_files

    files = speaker_files(data_dir)
    if max_utterances_per_speaker is not None:
        files = {k: v[:max_utterances_per_speaker] for k, v in files.items()}
    embeds, speakers, skipped = [], [], 0
    pairs = [(spk, f) for spk, fs in files.items() for f in fs]
    for spk, f in tqdm(pairs, desc="embed", unit="file", disable=not progress):
        try:
            embeds.append(embed_utterance(model, preprocess_wav(f), options))
        except AudioError:
            skipped += 1
            continue
        speakers.append(spk)
    if len(set(speakers)) < 2:
        raise InputShapeError(f"{data_dir}: the EER needs at least 2 speakers with usable audio")
    emb = np.stack(embeds)  # (N, D)
    scores, same = pair_scores(emb, speakers)
    if not same.any():
        raise InputShapeError(f"{data_dir}: the EER needs a speaker with at least 2 usable utterances")
    eer, threshold = equal_error_rate(scores, same)
    out_png = plot_umap(emb, speakers, umap_png) if umap_png is not None else None
    return {
        "eer": eer,
        "threshold": threshold,
        "n_speakers": len(set(speakers)),
        "n_utterances": len(speakers),
        "n_same_pairs": int(same.sum()),
        "n_diff_pairs": int((~same).sum()),
        "mean_same": float(scores[same].mean()),
        "mean_diff": float(scores[~same].mean()),
        "skipped": skipped,
        "umap_png": str(out_png) if out_png is not None else None,
    }


def plot_umap(embeddings: np.ndarray, labels: Sequence[str], path: str | Path, *, seed: int = 0,
              title: str = "speaker embeddings (UMAP)") -> Path:
    """Project embeddings (N, D) to 2-D with UMAP and write a PNG coloured by label."""
    e = np.asarray(embeddings, dtype=np.float32)
    if e.ndim != 2 or e.shape[0] != len(labels):
        raise InputShapeError(f"expected ({len(labels)}, D) embeddings, got {e.shape}")
    if e.shape[0] < 4:
        raise InputShapeError(f"a UMAP projection needs at least 4 embeddings, got {e.shape[0]}")
    import matplotlib
    import umap
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    reducer = umap.UMAP(n_neighbors=min(15, e.shape[0] - 1), min_dist=0.1, metric="cosine", random_state=seed, n_jobs=1)
    xy = reducer.fit_transform(e)  # (N, 2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6, 6), dpi=100)
    ax = fig.add_subplot()
    names = sorted(set(labels))
    cmap = matplotlib.colormaps["tab20" if len(names) > 10 else "tab10"]
    lab = np.asarray(labels)
    for k, name in enumerate(names):
        pts = xy[lab == name]
        ax.scatter(pts[:, 0], pts[:, 1], s=18, color=cmap(k % cmap.N), label=name)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(names) <= 20:
        ax.legend(fontsize=7, loc="best", markerscale=0.8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
