#!/bin/bash
# The default vocoder's training: a WaveRNN with 256-wide GRU/FC layers (RAW, 9-bit mu-law), pruned
# gradually to 90 % block sparsity (16x1) between steps 1 000 and 20 000.
# Steps 0-700 (session 3): ground-truth mels, one process, float32, 16 segments of 1 000 samples.
# From step 700 (session 9): the shipped synthesizer's GTA mels (teacher forced, `rtclone train gta`;
# like RTVC, so the vocoder learns to turn the synthesizer's blurred mels into the real audio), two
# DDP processes x 16 segments (global batch 32) with bfloat16 autocast (1.5x faster per core on
# AVX512-BF16), a held-out loss (val_loss, the corpus's held-out split) at every checkpoint.
# Seeds runs/voc-small from training/voc-small when missing. Extra arguments pass through.
cd "$(dirname "$0")/../.."
# the step-11 400 synthesizer the GTA mels came from (the shipped default until session 13; a later default
# would silently give the run other training data under the same folder name)
exec bash training/vocoder-run.sh voc-small training/synth-small/synthesizer.pt runs/gta-11400 runs/gta-11400-eval --checkpoint-every 100 "$@"
