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
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# the step-11 400 synthesizer the GTA mels came from (the shipped default until session 13; a later default
# would silently give the run other training data under the same folder name)
SYN=training/synth-small/synthesizer.pt
if [ ! -f runs/voc-small/vocoder.pt ]; then
  mkdir -p runs/voc-small && cp training/voc-small/vocoder.pt training/voc-small/vocoder_optimizer.pt training/voc-small/log.jsonl runs/voc-small/ || exit 1
fi
if [ ! -f runs/gta-11400/metadata.json ] || [ ! -f runs/gta-11400-eval/metadata.json ]; then
  # the corpus and its prepared splits (built and prepared if missing), as for the synthesizer
  [ -d data/corpus-v2 ] || .venv/bin/rtclone corpus build data/corpus-v2 || exit 1
  .venv/bin/rtclone train synthesizer data/corpus-v2 runs/synth-small --prepared runs/synth-small/prepared-v2 --prepare-only || exit 1
  .venv/bin/rtclone train synthesizer data/corpus-v2 runs/synth-small --prepared runs/synth-small/prepared-v2-eval --prepare-only --split eval || exit 1
  [ -f runs/gta-11400/metadata.json ] || .venv/bin/rtclone train gta $SYN runs/synth-small/prepared-v2 runs/gta-11400 || exit 1
  [ -f runs/gta-11400-eval/metadata.json ] || .venv/bin/rtclone train gta $SYN runs/synth-small/prepared-v2-eval runs/gta-11400-eval || exit 1
fi
exec .venv/bin/python -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 2 \
  -m rtclone.train.vocoder runs/gta-11400 runs/voc-small --val runs/gta-11400-eval --bf16 \
  --rnn-dims 256 --fc-dims 256 --lr 3e-4 --steps 200000 --batch-size 16 --checkpoint-every 100 \
  --prune-target 0.9 --prune-start 1000 --prune-end 20000 --prune-every 250 "$@"
