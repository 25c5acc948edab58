#!/bin/bash
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec .venv/bin/rtclone train vocoder data/corpus-v2 runs/voc-small --rnn-dims 256 --fc-dims 256 --lr 3e-4 --steps 200000 --batch-size 16 --checkpoint-every 100 --prune-target 0.9 --prune-start 1000 --prune-end 20000 --prune-every 250 --json
