#!/bin/bash
# The LPC WaveRNN (session 28): voc-small's 256-wide, 90 %-sparse (16x1 blocks) WaveRNN fine-tuned to model
# the excitation of the mel's own order-16 linear predictor (rtclone.lpc, dims.lpc_order = 16) instead of
# the waveform. Started from voc-small's GTA fine-tune at step 37 800 (runs/voc-ft23000, session 27) with
# lpc_order set in the checkpoint's dims; trained on the shipped (step-23 000, r = 2) synthesizer's GTA mels,
# two DDP processes x 16 segments of 1 000 samples, bfloat16, the 90 % mask kept (the schedule ended at 20 000).
# Seeds runs/voc-lpc from training/voc-lpc when missing and exports the GTA mels when they are missing.
# Extra arguments pass through (e.g. --lr 1e-4).
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
SYN=rtclone/models/synthesizer.pt
if [ ! -f runs/voc-lpc/vocoder.pt ]; then
  mkdir -p runs/voc-lpc && cp training/voc-lpc/vocoder.pt training/voc-lpc/vocoder_optimizer.pt training/voc-lpc/log.jsonl runs/voc-lpc/ || exit 1
fi
if [ ! -f runs/gta-23000/metadata.json ] || [ ! -f runs/gta-23000-eval/metadata.json ]; then
  [ -d data/corpus-v2 ] || .venv/bin/rtclone corpus build data/corpus-v2 || exit 1
  .venv/bin/rtclone train synthesizer data/corpus-v2 runs/synth-small --prepared runs/synth-small/prepared-v2 --prepare-only || exit 1
  .venv/bin/rtclone train synthesizer data/corpus-v2 runs/synth-small --prepared runs/synth-small/prepared-v2-eval --prepare-only --split eval || exit 1
  [ -f runs/gta-23000/metadata.json ] || .venv/bin/rtclone train gta $SYN runs/synth-small/prepared-v2 runs/gta-23000 || exit 1
  [ -f runs/gta-23000-eval/metadata.json ] || .venv/bin/rtclone train gta $SYN runs/synth-small/prepared-v2-eval runs/gta-23000-eval || exit 1
fi
exec .venv/bin/python -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 2 \
  -m rtclone.train.vocoder runs/gta-23000 runs/voc-lpc --val runs/gta-23000-eval --bf16 \
  --rnn-dims 256 --fc-dims 256 --lr 3e-4 --steps 200000 --batch-size 16 --checkpoint-every 200 \
  --prune-target 0.9 --prune-start 1000 --prune-end 20000 --prune-every 250 "$@"
