#!/bin/bash
# Stronger scheduled sampling (session 21): the shipped step 20 000 of the scheduled-sampling arm
# (training/synth-wide-ss) trained on exactly as run-ss.sh trains it (same prepared-v4, seed, batches, rate
# 2.5e-4), except that the probability of feeding a decoder step its own (first-pass) prediction rises on from
# 0.3 at step 20 000 to 0.5 at 20 400 and stays there (`--own-frames 0.5 --own-ramp 19400:20400`: the ramp is
# linear from 0 at 19 400, so it meets the 0.3 in force at 20 000). Why: going from teacher forcing to 0.3
# (session 15) was the one change since step 18 400 that bought fewer free-running word errors. Extra arguments
# pass through (e.g. --steps).
cd "$(dirname "$0")/../.."
RTCLONE_SS_RUN=runs/synth-wide-ss05 RTCLONE_SS_PACK=training/synth-wide-ss05 exec bash training/synth-wide/run-ss.sh \
  --own-frames 0.5 --own-ramp 19400:20400 --steps 23000 "$@"
