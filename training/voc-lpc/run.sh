#!/bin/bash
# The LPC WaveRNN (session 28): voc-small's 256-wide, 90 %-sparse (16x1 blocks) WaveRNN fine-tuned to model
# the excitation of the mel's own order-16 linear predictor (rtclone.lpc, dims.lpc_order = 16) instead of
# the waveform. Started from voc-small's GTA fine-tune at step 37 800 (runs/voc-ft23000, session 27) with
# lpc_order set in the checkpoint's dims; trained on the shipped (step-23 000, r = 2) synthesizer's GTA mels,
# two DDP processes x 16 segments of 1 000 samples, bfloat16, the 90 % mask kept (the schedule ended at 20 000).
# Seeds runs/voc-lpc from training/voc-lpc when missing and exports the GTA mels when they are missing.
# Extra arguments pass through (e.g. --lr 1e-4).
cd "$(dirname "$0")/../.."
exec bash training/vocoder-run.sh voc-lpc rtclone/models/synthesizer.pt runs/gta-23000 runs/gta-23000-eval "$@"
