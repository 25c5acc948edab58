#!/bin/bash
# Speaker-consistency arm (session 24): the shipped step 23 000 of the r = 2 run (training/synth-wide-r2) trained on
# exactly as run-r2.sh trains it (same prepared-v4, seed, batches, rate, own frames 0.3 in parallel, r = 2), plus
# 0.5 x the speaker-consistency loss (`--speaker-loss 0.5`: the frozen pretrained encoder's cosine distance between
# the postnet mel and the recording on a 1.6 s window, rtclone/train/speaker_loss.py). Why: clones of sibling voices
# (the corpus's pitch / timbre variants of one base voice) land nearer a sibling's reference than their own, and
# the mel losses alone do not ask the decoder to keep what tells siblings apart. The plain r = 2 run's steps
# 24 000 / 25 000 are its control. Extra arguments pass through (e.g. --steps).
cd "$(dirname "$0")/../.."
RTCLONE_SS_RUN=runs/synth-wide-scl RTCLONE_SS_PACK=training/synth-wide-r2 exec bash training/synth-wide/run-ss.sh \
  --r-schedule 0:4,20000:2 --speaker-loss 0.5 --steps 24400 "$@"
