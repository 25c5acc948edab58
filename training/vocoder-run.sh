#!/bin/bash
# A WaveRNN run of training/NAME on a synthesizer's GTA mels (run from the repository root):
#   bash training/vocoder-run.sh NAME SYNTHESIZER GTA_TRAIN_DIR GTA_EVAL_DIR [train options...]
# Seeds runs/NAME from the committed training/NAME files when missing; builds corpus v2 and its prepared
# training / held-out splits and exports the synthesizer's teacher-forced mels of each (`rtclone train gta`)
# when missing; then trains with two DDP processes x 16 segments of 1 000 samples (global batch 32), bfloat16,
# a held-out loss at every checkpoint, 256-wide GRU/FC layers pruned to 90 % 16x1 block sparsity between steps
# 1 000 and 20 000 (a resumed run past 20 000 keeps its mask). Later options override these.
NAME=$1 SYN=$2 GTA=$3 GTA_EVAL=$4
[ -n "$GTA_EVAL" ] || { echo "usage: $0 NAME SYNTHESIZER GTA_TRAIN_DIR GTA_EVAL_DIR [options]" >&2; exit 2; }
shift 4
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if [ ! -f "runs/$NAME/vocoder.pt" ]; then
  mkdir -p "runs/$NAME" && cp "training/$NAME/vocoder.pt" "training/$NAME/vocoder_optimizer.pt" "training/$NAME/log.jsonl" "runs/$NAME/" || exit 1
fi
if [ ! -f "$GTA/metadata.json" ] || [ ! -f "$GTA_EVAL/metadata.json" ]; then
  [ -d data/corpus-v2 ] || .venv/bin/rtclone corpus build data/corpus-v2 || exit 1
  .venv/bin/rtclone train synthesizer data/corpus-v2 runs/synth-small --prepared runs/synth-small/prepared-v2 --prepare-only || exit 1
  .venv/bin/rtclone train synthesizer data/corpus-v2 runs/synth-small --prepared runs/synth-small/prepared-v2-eval --prepare-only --split eval || exit 1
  [ -f "$GTA/metadata.json" ] || .venv/bin/rtclone train gta "$SYN" runs/synth-small/prepared-v2 "$GTA" || exit 1
  [ -f "$GTA_EVAL/metadata.json" ] || .venv/bin/rtclone train gta "$SYN" runs/synth-small/prepared-v2-eval "$GTA_EVAL" || exit 1
fi
exec .venv/bin/python -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 2 \
  -m rtclone.train.vocoder "$GTA" "runs/$NAME" --val "$GTA_EVAL" --bf16 \
  --rnn-dims 256 --fc-dims 256 --lr 3e-4 --steps 200000 --batch-size 16 --checkpoint-every 200 \
  --prune-target 0.9 --prune-start 1000 --prune-end 20000 --prune-every 250 "$@"
