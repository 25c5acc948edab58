#!/bin/bash
# The shipped mel inverter's training (rtclone.mel_inverter: the learned mel -> linear magnitude map
# Griffin-Lim runs on): corpus v2's training split (9 720 utterances, 2.79 M frames), validated on its
# eval split; L1 on the normalised log magnitude + spectral convergence (--sc), Adam 1e-3 with a cosine
# decay to 0 at --steps. One thread: ≈ 0.05 s a step at the defaults (512 wide, 3 layers, context 2).
# Builds corpus v2 when missing; the frame pairs are cached in the run folder (≈ 3 GB).
# The shipped one (session 25): --steps 16000 --sc 2, as below. Extra arguments pass through.
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if [ ! -f runs/inverter-run/inverter.pt ]; then  # resume from the committed checkpoint
  mkdir -p runs/inverter-run && cp training/inverter/inverter.pt training/inverter/inverter_optimizer.pt training/inverter/log.jsonl runs/inverter-run/ || exit 1
fi
[ -d data/corpus-v2 ] || .venv/bin/rtclone corpus build data/corpus-v2 || exit 1
exec .venv/bin/rtclone train inverter data/corpus-v2 runs/inverter-run --jobs 2 --steps 16000 --sc 2 "$@"
