#!/bin/bash
# The widened synthesizer (session 8): the default line's step 12 000 (r = 4, Adam 1e-4 from 11 400)
# with its decoder LSTMs grown 384 -> 768 units by `python -m rtclone.train.widen` (same outputs at
# the start; the new units begin to matter as they train). Seeds runs/synth-wide from the committed
# checkpoint when it is missing, then resumes it with training/synth-small/run.sh's data, ranks and
# schedule (Adam 2.5e-4; checkpoints every 200 steps). Extra arguments pass through.
cd "$(dirname "$0")/../.."
if [ ! -f runs/synth-wide/synthesizer.pt ]; then
  mkdir -p runs/synth-wide && cp training/synth-wide/synthesizer.pt training/synth-wide/optimizer.pt training/synth-wide/log.jsonl runs/synth-wide/
fi
OUT=runs/synth-wide exec bash training/synth-small/run.sh "$@"
