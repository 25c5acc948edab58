#!/bin/bash
# Speaker-consistency arm, free-running (session 24): as run-scl.sh (the shipped r = 2 step 23 000 trained on with
# its recipe), but the speaker loss (weight 1.0) judges the first 128 frames (1.6 s) each utterance's decoder makes
# free-running, fed its own frames as at inference (`--speaker-free-run 128`), not a window of the teacher-forced
# mel: run-scl.sh's teacher-forced form lowered the held-out teacher-forced speaker distance (0.075 -> 0.054) but
# left the clones' similarity and identification where they were (dev set, step 23 600). Extra arguments pass through.
cd "$(dirname "$0")/../.."
RTCLONE_SS_RUN=runs/synth-wide-sclfr RTCLONE_SS_PACK=training/synth-wide-r2 exec bash training/synth-wide/run-ss.sh \
  --r-schedule 0:4,20000:2 --speaker-loss 1.0 --speaker-free-run 128 --steps 24000 "$@"
