#!/bin/bash
# Experiment arm (session 12): the widened synthesizer from step 15 400 trained on corpus v3 (chapter 4's
# 3 000 new sentences added to v2's training set: 14 220 items) into runs/synth-wide-v3, everything else
# as run.sh (ranks, batch, r = 4, Adam 2.5e-4, --bf16-lstm, the same held-out validation set). The
# control arm is run.sh itself (corpus v2) from the same step; compare them at equal steps with
# `rtclone eval clone data/corpus-v2 --models DIR --seen 8 --heldout 4 --sentences 12 --no-copy-synthesis`.
# Builds and prepares what is missing: corpus v2, v3 as its hard-linked copy grown by chapter 4, the
# prepared v3 training set and v2's held-out set (≈ 15 min on a fresh machine, 2 jobs each).
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
[ -d data/corpus-v2 ] || .venv/bin/rtclone corpus build data/corpus-v2 --jobs 2 || exit 1
if [ ! -d data/corpus-v3 ]; then
  cp -al data/corpus-v2 data/corpus-v3 && rm data/corpus-v3/manifest.json || exit 1
fi
# resumes an interrupted build; renders nothing when complete
.venv/bin/rtclone corpus build data/corpus-v3 --extra2 125 --jobs 2 || exit 1
.venv/bin/rtclone train synthesizer data/corpus-v3 runs/synth-small --prepared runs/synth-small/prepared-v3 --prepare-only --jobs 2 || exit 1
.venv/bin/rtclone train synthesizer data/corpus-v2 runs/synth-small --prepared runs/synth-small/prepared-v2-eval --prepare-only --split eval --jobs 2 || exit 1
# RTCLONE_DATA_ONLY=1: stop here (run-v4.sh builds on this data)
[ -n "$RTCLONE_DATA_ONLY" ] && exit 0
# resumes this arm's committed checkpoint (training/synth-wide-v3, session 13 on) or, without one, starts it from
# the widened line's committed 15 400
if [ ! -f runs/synth-wide-v3/synthesizer.pt ]; then
  SRC=training/synth-wide-v3; [ -f $SRC/parts.json ] || SRC=training/synth-wide
  .venv/bin/python scripts/pack_run.py --unpack $SRC runs/synth-wide-v3 || exit 1
fi
exec .venv/bin/python -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 2 \
  -m rtclone.train.synthesizer runs/synth-small/prepared-v3 runs/synth-wide-v3 --dims small --steps 200000 \
  --batch-size 16 --r-schedule 0:4 --guided-attention 2.0 --checkpoint-every 200 --val runs/synth-small/prepared-v2-eval \
  --lr 2.5e-4 --bf16-lstm "$@"
