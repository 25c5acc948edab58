"""Write a model folder's ``speaker_mean.npy``: the training voices' mean speaker embedding.

    python scripts/speaker_mean.py data/corpus-v2 rtclone/models/speaker_mean.npy

``Cloner.speaker_contrast`` (``rtclone eval clone --speaker-contrast A``) conditions the synthesizer on
normalise(e + A (e − mean)); the mean is that of the corpus the synthesizer trained on (its ``train``
voices, a 5 s reference of training sentences each, the pretrained encoder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path, help="a built corpus (rtclone corpus build)")
    ap.add_argument("out", type=Path, help="the .npy to write")
    ap.add_argument("--seconds", type=float, default=5.0, help="reference length per voice")
    args = ap.parse_args()
    from rtclone.eval_clone import training_speaker_mean

    mean = training_speaker_mean(args.corpus, seconds=args.seconds)
    np.save(args.out, mean, allow_pickle=False)
    print(f"wrote {args.out}: norm {float(np.linalg.norm(mean)):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
