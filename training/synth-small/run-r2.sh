#!/bin/bash
# The r = 2 experiment (session 6): the default synthesizer's line continued at reduction factor 2
# (twice the decoder steps, finer timing for consonants) into runs/synth-r2. Seeds runs/synth-r2 from
# the committed r = 4 checkpoint when it is missing; otherwise resumes it. Same data, ranks and rate
# as run.sh; checkpoints every 100 steps (a step takes ~7 s). Extra arguments pass through.
cd "$(dirname "$0")/../.."
if [ ! -f runs/synth-r2/synthesizer.pt ]; then
  mkdir -p runs/synth-r2 && cp training/synth-small/synthesizer.pt training/synth-small/optimizer.pt training/synth-small/log.jsonl runs/synth-r2/
fi
OUT=runs/synth-r2 exec bash training/synth-small/run.sh --r-schedule 0:2 --checkpoint-every 100 "$@"
