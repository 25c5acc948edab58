#!/bin/bash
# The widened synthesizer (session 8): the default line's step 12 000 (r = 4, Adam 1e-4 from 11 400)
# with its decoder LSTMs grown 384 -> 768 units by `python -m rtclone.train.widen` (same outputs at
# the start; the new units begin to matter as they train). Seeds runs/synth-wide from the committed
# checkpoint when it is missing (packed by scripts/pack_run.py: files cut into < 40 MiB parts, joined
# and SHA-256-checked here), then resumes it with training/synth-small/run.sh's data, ranks and
# schedule (Adam 2.5e-4; checkpoints every 200 steps). From step 13 200 (session 12) the decoder's residual
# LSTMs train in the C layer with bfloat16 product operands (--bf16-lstm: a 768-wide step in 0.77 of the
# time, benchmarks/train_synthesizer.py). Extra arguments pass through.
cd "$(dirname "$0")/../.."
if [ ! -f runs/synth-wide/synthesizer.pt ]; then
  .venv/bin/python scripts/pack_run.py --unpack training/synth-wide runs/synth-wide || exit 1
fi
OUT=runs/synth-wide exec bash training/synth-small/run.sh --bf16-lstm "$@"
