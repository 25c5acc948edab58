#!/bin/bash
# Resume the default synthesizer's training on both cores: 2 DDP ranks x 16 utterances (global batch 32).
# On this 2-core CPU a step's cost barely depends on the batch (the decoder loop is latency-bound:
# 1.5 s at 8 or 16 per rank, 2.6 s at 32), so two ranks see twice the data per second of one.
# Adam's rate: 1e-3 to step 6000 (the loss flattened from step 4800), 5e-4 to 10600, 2.5e-4 after
# (the validation loss had flattened at 5e-4). Extra arguments are
# passed on to the trainer (the last of a repeated option wins); OUT=DIR trains into DIR instead of runs/synth-small.
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
[ -d data/corpus-v2 ] || .venv/bin/rtclone corpus build data/corpus-v2 --jobs 2
# prepares only what is missing (nothing when up to date)
.venv/bin/rtclone train synthesizer data/corpus-v2 runs/synth-small --prepared runs/synth-small/prepared-v2 --prepare-only --jobs 2
# the held-out voices and sentences, for the validation loss logged at every checkpoint (val_* in log.jsonl)
.venv/bin/rtclone train synthesizer data/corpus-v2 runs/synth-small --prepared runs/synth-small/prepared-v2-eval --prepare-only --split eval --jobs 2
exec .venv/bin/python -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 2 \
  -m rtclone.train.synthesizer runs/synth-small/prepared-v2 "${OUT:-runs/synth-small}" --dims small --steps 200000 \
  --batch-size 16 --r-schedule 0:4 --guided-attention 2.0 --checkpoint-every 200 --val runs/synth-small/prepared-v2-eval --lr 2.5e-4 "$@"
