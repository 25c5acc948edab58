#!/bin/bash
# Annealing arm (session 19): the shipped step 20 000 of the scheduled-sampling arm (training/synth-wide-ss)
# trained on exactly as run-ss.sh trains it (same prepared-v4, seed, batches, own frames 0.3 in parallel), except
# that Adam's rate, constant at 2.5e-4 since step 10 600, falls geometrically to 2.5e-5 over 20 000-21 000 and
# stays there to step 21 400 (`--lr-decay 20000:21000 --lr-final 2.5e-5`). Why: every run of this line so far
# trained at a constant rate; step 20 000's successors at that rate (20 600, 24 400) were no better on the
# 20 x 20 eval. Result (training/README.md): not better either. Extra arguments pass through.
cd "$(dirname "$0")/../.."
RTCLONE_SS_RUN=runs/synth-wide-anneal RTCLONE_SS_PACK=training/synth-wide-anneal exec bash training/synth-wide/run-ss.sh \
  --steps 21400 --lr-decay 20000:21000 --lr-final 2.5e-5 "$@"
