"""Evaluation: EER on score sets with known answers, pair scoring, eval_encoder, the verify threshold, UMAP plot."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import make_speech
from rtclone.audio import save_wav
from rtclone.errors import InputShapeError
from rtclone.eval import equal_error_rate, eval_encoder, pair_scores, plot_umap


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


# The calibration set of rtclone.encoder.DEFAULT_VERIFY_THRESHOLD (also the training test's voices).
CALIBRATION_VOICES = [("kal", "flite"), ("kal16", "flite"), ("awb", "flite"), ("rms", "flite"), ("slt", "flite"),
                      ("en-us", "espeak-ng"), ("en+f3", "espeak-ng"), ("en+m3", "espeak-ng"), ("en-gb+f4", "espeak-ng")]
CALIBRATION_SENTENCES = [
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
]


def write_voice_folder(root: Path, voices=CALIBRATION_VOICES, sentences=CALIBRATION_SENTENCES) -> Path:
    """root/<engine>-<voice>/<i>.wav for every voice and sentence (a flat speaker-folder dataset)."""
    for voice, engine in voices:
        d = root / f"{engine}-{voice}"
        d.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(sentences):
            save_wav(d / f"{i}.wav", make_speech(text, voice, engine))
    return root


# ---- equal error rate ------------------------------------------------------------------------
def test_eer_perfectly_separable_is_zero():
    eer, thr = equal_error_rate([0.9, 0.8, 0.85, 0.3, 0.2, 0.1], [1, 1, 1, 0, 0, 0])
    assert eer == 0.0
    assert thr == pytest.approx((0.8 + 0.3) / 2)  # midway between the lowest target and highest non-target


def test_eer_hand_computed():
    # Targets 0.9, 0.8, 0.4; non-targets 0.7, 0.3, 0.2. Accepting down to 0.7: FAR = 1/3 (0.7),
    # FRR = 1/3 (0.4) -> EER = 1/3; any threshold in (0.4, 0.7] gives it -> midpoint 0.55.
    eer, thr = equal_error_rate(np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2]), np.array([True, True, True, False, False, False]))
    assert eer == pytest.approx(1 / 3)
    assert thr == pytest.approx(0.55)
    # Fully inverted scores: every target below every non-target -> EER 1.
    eer, _ = equal_error_rate([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0])
    assert eer == pytest.approx(1.0)


def test_eer_with_ties():
    # Tied scores form one decision point. Targets 0.9, 0.8, 0.5, 0.5; non-targets 0.5, 0.2, 0.1, 0.05.
    # Down to 0.8: FAR 0, FRR 1/2; down to 0.5 (all three tied trials at once): FAR 1/4, FRR 0 ->
    # closest: EER = 1/8, threshold midway between 0.5 and 0.2.
    eer, thr = equal_error_rate([0.5, 0.9, 0.5, 0.8, 0.5, 0.2, 0.1, 0.05], [0, 1, 1, 1, 1, 0, 0, 0])
    assert eer == pytest.approx(0.125)
    assert thr == pytest.approx(0.35)


def test_eer_fully_overlapping_is_one_half():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=20000)
    labels = rng.random(20000) < 0.5
    eer, thr = equal_error_rate(scores, labels)
    assert eer == pytest.approx(0.5, abs=0.02)
    # Two unit Gaussians 2 apart: EER = Phi(-1) = 0.1587 at the midpoint 1.0.
    pos, neg = rng.normal(2.0, 1.0, 20000), rng.normal(0.0, 1.0, 20000)
    eer, thr = equal_error_rate(np.r_[pos, neg], np.r_[np.ones(20000, bool), np.zeros(20000, bool)])
    assert eer == pytest.approx(0.1587, abs=0.01)
    assert thr == pytest.approx(1.0, abs=0.05)


def test_eer_rejects_bad_input():
    with pytest.raises(InputShapeError):
        equal_error_rate([0.1, 0.2], [1, 1])  # no non-targets
    with pytest.raises(InputShapeError):
        equal_error_rate([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(InputShapeError):
        equal_error_rate([0.1, np.nan], [1, 0])


def test_pair_scores_by_hand():
    e = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])  # cosines: (0,1) = 1, (0,2) = 0, (1,2) = 0
    scores, same = pair_scores(e, ["a", "a", "b"])
    np.testing.assert_allclose(scores, [1.0, 0.0, 0.0], atol=1e-12)
    assert same.tolist() == [True, False, False]


# ---- eval_encoder and the calibrated verify threshold -----------------------------------------
@pytest.mark.slow
def test_calibrated_threshold(tmp_path):
    """Re-run the documented calibration: the default threshold is the EER threshold of this set."""
    from rtclone.checkpoints import load_encoder
    from rtclone.encoder import DEFAULT_VERIFY_THRESHOLD

    root = write_voice_folder(tmp_path / "voices")
    (tmp_path / "voices" / "empty-speaker").mkdir()  # no audio: not a speaker
    res = eval_encoder(load_encoder(), root)
    n = len(CALIBRATION_VOICES) * len(CALIBRATION_SENTENCES)
    assert res["n_speakers"] == len(CALIBRATION_VOICES) and res["n_utterances"] == n and res["skipped"] == 0
    assert res["n_same_pairs"] == len(CALIBRATION_VOICES) * 15  # C(6, 2) per speaker
    assert res["n_same_pairs"] + res["n_diff_pairs"] == n * (n - 1) // 2
    assert res["mean_same"] > res["mean_diff"] + 0.2
    assert res["eer"] < 0.12
    assert abs(res["threshold"] - DEFAULT_VERIFY_THRESHOLD) < 0.01


def test_eval_encoder_needs_two_speakers(tmp_path):
    from rtclone.encoder import EncoderDims, SpeakerEncoder

    root = write_voice_folder(tmp_path / "one", voices=[("slt", "flite")], sentences=CALIBRATION_SENTENCES[:2])
    with pytest.raises(InputShapeError):
        eval_encoder(SpeakerEncoder(EncoderDims(hidden=8, n_layers=1, embed=8)), root)


# ---- UMAP plot -------------------------------------------------------------------------------
def test_plot_umap_writes_png(tmp_path, monkeypatch):
    """The plotting path with a stand-in projection (umap-learn's numba JIT takes ~30 s here)."""
    seen = {}

    class FakeUMAP:
        def __init__(self, **kw):
            seen.update(kw)

        def fit_transform(self, x):
            return x[:, :2]

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    rng = np.random.default_rng(0)
    emb = np.concatenate([rng.normal(i, 0.1, (5, 8)) for i in range(3)])
    out = plot_umap(emb, [f"spk{i}" for i in range(3) for _ in range(5)], tmp_path / "sub" / "u.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (w, h) == (600, 600)
    assert seen["n_neighbors"] == 14 and seen["metric"] == "cosine"
    with pytest.raises(InputShapeError):
        plot_umap(emb[:3], ["a", "b", "c"], tmp_path / "x.png")
