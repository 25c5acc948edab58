#!/bin/bash
# Reduction factor 2 (session 21): the shipped step 20 000 of the scheduled-sampling arm (training/synth-wide-ss)
# trained on exactly as run-ss.sh trains it (same prepared-v4, seed, batches, rate 2.5e-4, own frames 0.3 in
# parallel), except that the decoder predicts 2 mel frames per step from step 20 000 on instead of 4
# (`--r-schedule 0:4,20000:2`; the projection already holds max_r frames, the first two of each group are kept).
# Why: the clones' mels are over-smoothed in time (0.79x the recordings' frame-to-frame change) and RTVC's
# released model ends its schedule at r = 2. Extra arguments pass through (e.g. --steps).
cd "$(dirname "$0")/../.."
RTCLONE_SS_RUN=runs/synth-wide-r2 RTCLONE_SS_PACK=training/synth-wide-r2 exec bash training/synth-wide/run-ss.sh \
  --r-schedule 0:4,20000:2 --steps 23000 "$@"
