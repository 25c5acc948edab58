#!/bin/bash
# Annealing arm (session 19): the shipped step 20 000 of the scheduled-sampling arm (training/synth-wide-ss)
# trained on exactly as run-ss.sh trains it (same prepared-v4, seed, batches, own frames 0.3 in parallel), except
# that Adam's rate, constant at 2.5e-4 since step 10 600, falls geometrically to 2.5e-5 over 20 000-21 000 and
# stays there (`--lr-decay 20000:21000 --lr-final 2.5e-5`). Why: every run of this line so far trained at a
# constant rate; step 20 000's successors at that rate (20 600, 24 400) were no better on the 20 x 20 eval.
# Builds and prepares what is missing through run-v4.sh's data steps.
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if [ ! -d runs/synth-small/prepared-v4 ] || [ ! -f data/corpus-v4/manifest.json ]; then
  RTCLONE_DATA_ONLY=1 bash training/synth-wide/run-v4.sh || exit 1
fi
if [ ! -f runs/synth-wide-anneal/synthesizer.pt ]; then
  if [ -f training/synth-wide-anneal/parts.json ]; then
    .venv/bin/python scripts/pack_run.py --unpack training/synth-wide-anneal runs/synth-wide-anneal || exit 1
  else
    .venv/bin/python scripts/pack_run.py --unpack training/synth-wide-ss runs/synth-wide-anneal || exit 1
  fi
fi
exec .venv/bin/python -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 2 \
  -m rtclone.train.synthesizer runs/synth-small/prepared-v4 runs/synth-wide-anneal --dims small --steps 21400 \
  --batch-size 16 --r-schedule 0:4 --guided-attention 2.0 --checkpoint-every 200 --val runs/synth-small/prepared-v2-eval \
  --lr 2.5e-4 --bf16-lstm --own-frames 0.3 --own-parallel --own-ramp 18400:19000 \
  --lr-decay 20000:21000 --lr-final 2.5e-5 "$@"
