#!/bin/bash
# Corpus-v4 arm (session 14): the widened synthesizer continued from the corpus-v3 arm on corpus v4 (chapter 5's
# 3 188 new sentences, sentences-extra3.txt, read 125 per training voice: 18 720 items) into runs/synth-wide-v4,
# everything else as run-v3.sh. Builds and prepares what is missing (v2, v3 through run-v3.sh; v4 as v3's
# hard-linked copy grown by chapter 5; prepared-v4 as prepared-v3's hard-linked copy grown by chapter 5's items).
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
RTCLONE_DATA_ONLY=1 bash training/synth-wide/run-v3.sh || exit 1
if [ ! -d data/corpus-v4 ]; then
  cp -al data/corpus-v3 data/corpus-v4 && rm data/corpus-v4/manifest.json || exit 1
fi
.venv/bin/rtclone corpus build data/corpus-v4 --extra2 125 --extra3 125 --jobs 2 || exit 1
if [ ! -d runs/synth-small/prepared-v4 ]; then
  cp -al runs/synth-small/prepared-v3 runs/synth-small/prepared-v4 || exit 1
fi
.venv/bin/rtclone train synthesizer data/corpus-v4 runs/synth-small --prepared runs/synth-small/prepared-v4 --prepare-only --jobs 2 || exit 1
# RTCLONE_DATA_ONLY=1: stop here (run-ss.sh builds on this data)
[ -n "$RTCLONE_DATA_ONLY" ] && exit 0
# resumes this arm's committed checkpoint or, without one, starts from the corpus-v3 arm's (its run directory
# when present, else its committed pack)
if [ ! -f runs/synth-wide-v4/synthesizer.pt ]; then
  if [ -f training/synth-wide-v4/parts.json ]; then
    .venv/bin/python scripts/pack_run.py --unpack training/synth-wide-v4 runs/synth-wide-v4 || exit 1
  elif [ -f runs/synth-wide-v3/synthesizer.pt ]; then
    mkdir -p runs/synth-wide-v4 && cp runs/synth-wide-v3/synthesizer.pt runs/synth-wide-v3/optimizer.pt runs/synth-wide-v3/log.jsonl runs/synth-wide-v4/ || exit 1
  else
    .venv/bin/python scripts/pack_run.py --unpack training/synth-wide-v3 runs/synth-wide-v4 || exit 1
  fi
fi
exec .venv/bin/python -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 2 \
  -m rtclone.train.synthesizer runs/synth-small/prepared-v4 runs/synth-wide-v4 --dims small --steps 200000 \
  --batch-size 16 --r-schedule 0:4 --guided-attention 2.0 --checkpoint-every 200 --val runs/synth-small/prepared-v2-eval \
  --lr 2.5e-4 --bf16-lstm "$@"
