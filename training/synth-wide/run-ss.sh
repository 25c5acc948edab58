#!/bin/bash
# Scheduled-sampling arm (session 15): the corpus-v3 arm's committed 18 400 continued on corpus v4 exactly as
# run-v4.sh continues it (same prepared set, seed, batches, rate), except that each decoder step is fed, with a
# probability rising linearly from 0 at step 18 400 to 0.3 at 19 000, the frame a first teacher-forced pass
# predicted instead of the recorded one (`--own-frames 0.3 --own-parallel --own-ramp 18400:19000`). The v4 arm
# is its control. Builds and prepares what is missing through run-v4.sh's data steps.
# RTCLONE_SS_RUN / RTCLONE_SS_PACK: another run folder / committed pack on the same recipe (run-anneal.sh).
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if [ ! -d runs/synth-small/prepared-v4 ] || [ ! -f data/corpus-v4/manifest.json ]; then
  RTCLONE_DATA_ONLY=1 bash training/synth-wide/run-v4.sh || exit 1
fi
RUN=${RTCLONE_SS_RUN:-runs/synth-wide-ss} PACK=${RTCLONE_SS_PACK:-training/synth-wide-ss}
if [ ! -f "$RUN/synthesizer.pt" ]; then
  for src in "$PACK" training/synth-wide-ss training/synth-wide-v3; do  # the first committed pack there is
    [ -f "$src/parts.json" ] && { .venv/bin/python scripts/pack_run.py --unpack "$src" "$RUN" || exit 1; break; }
  done
fi
exec .venv/bin/python -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 2 \
  -m rtclone.train.synthesizer runs/synth-small/prepared-v4 "$RUN" --dims small --steps 200000 \
  --batch-size 16 --r-schedule 0:4 --guided-attention 2.0 --checkpoint-every 200 --val runs/synth-small/prepared-v2-eval \
  --lr 2.5e-4 --bf16-lstm --own-frames 0.3 --own-parallel --own-ramp 18400:19000 "$@"
