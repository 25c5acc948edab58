"""Grow a trained synthesizer's decoder LSTMs without changing what it computes.

A synthesizer that underfits its own training data (teacher forced on training sentences, the
shipped step 11 400 gives 1.5× the recordings' WER) needs more capacity, but training a wider
model from scratch costs as many CPU-hours again. Here the residual decoder LSTMs go from
``lstm_dims`` L to W > L units with the old function kept exactly:

* every old unit keeps its weights and reads nothing from the new dimensions (those weights are 0);
* new units start at the framework's default initialisation and read everything;
* whatever consumes the decoder's W-wide output (mel and stop projections) starts with 0 weights
  on the new dimensions, so at first they add nothing, while their gradients are not 0.

The optimizer's Adam moments move along with the weights (0 for the new entries), so a resumed
run keeps its state. ``python -m rtclone.train.widen SRC_DIR OUT_DIR --lstm-dims W`` turns a
training run directory (``synthesizer.pt`` + ``optimizer.pt``) into a wider one that
``rtclone.train.synthesizer`` resumes.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import OptionsError
from ..synthesizer import Tacotron

__all__ = ["widen_decoder", "widen_adam_state", "widen_run", "main"]

_LSTMS = ("decoder.res_rnn1", "decoder.res_rnn2")


def _index_maps(name: str, old: int, new: int, ctx: int) -> tuple[torch.Tensor | None, torch.Tensor | None] | None:
    """For a state-dict tensor: None when widening leaves it alone; else where its old rows and
    columns go in the new tensor, as index tensors (None: that axis is not widened). Old rows are
    old output units."""
    def gates(n_old: int, n_new: int) -> torch.Tensor:  # LSTM rows: 4 gate blocks of n units each
        return torch.cat([torch.arange(n_old) + k * n_new for k in range(4)])

    if name.startswith(_LSTMS):
        return gates(old, new), (torch.arange(old) if name.endswith(("weight_ih", "weight_hh")) else None)
    if name.startswith("decoder.rnn_input."):
        return torch.arange(old), None
    if name == "decoder.mel_proj.weight":
        return None, torch.arange(old)
    if name == "decoder.stop_proj.weight":  # reads cat([x (lstm), context])
        return None, torch.cat([torch.arange(old), torch.arange(ctx) + new])
    return None


def _place(old: torch.Tensor, target: torch.Tensor, rows: torch.Tensor | None, cols: torch.Tensor | None,
           zero_new_inputs: bool) -> torch.Tensor:
    """``target`` with ``old`` written at (rows, cols); with ``zero_new_inputs`` the old output rows
    (all rows when ``rows`` is None) read 0 from every column that is not an old column."""
    out = target.clone()
    r = rows if rows is not None else torch.arange(out.shape[0])
    if out.dim() == 1:
        out[r] = old
        return out
    c = cols if cols is not None else torch.arange(out.shape[1])
    if zero_new_inputs and cols is not None:
        out[r.unsqueeze(1), torch.arange(out.shape[1]).unsqueeze(0)] = 0.0
    out[r.unsqueeze(1), c.unsqueeze(0)] = old
    return out


def widen_decoder(model: Tacotron, lstm_dims: int, *, seed: int = 0) -> Tacotron:
    """A copy of ``model`` with ``lstm_dims`` decoder LSTM units that computes the same outputs."""
    old = model.dims.lstm_dims
    if not isinstance(lstm_dims, int) or isinstance(lstm_dims, bool) or lstm_dims < old:
        raise OptionsError(f"lstm_dims must be an integer >= the model's {old}, got {lstm_dims!r}")
    with torch.random.fork_rng(devices=[]):  # seeded new units; the caller's random stream is left alone
        torch.manual_seed(seed)
        wide = Tacotron(dataclasses.replace(model.dims, lstm_dims=lstm_dims))
    ctx = model.dims.encoder_dims + model.dims.speaker_embedding_size
    fresh = wide.state_dict()
    state = {}
    for name, tensor in model.state_dict().items():
        maps = _index_maps(name, old, lstm_dims, ctx) if lstm_dims != old else None
        state[name] = tensor.clone() if maps is None else _place(tensor, fresh[name], *maps, zero_new_inputs=True)
    wide.load_state_dict(state, strict=True)
    wide.train(model.training)
    return wide


def widen_adam_state(optimizer_state: dict[str, Any], model: Tacotron, wide: Tacotron) -> dict[str, Any]:
    """An Adam ``state_dict`` for ``wide`` from ``optimizer_state`` of ``model`` (parameters in the
    same order): old moments where the old weights went, 0 for the new entries, steps kept."""
    names = [n for n, _ in model.named_parameters()]
    wide_params = dict(wide.named_parameters())
    old, new = model.dims.lstm_dims, wide.dims.lstm_dims
    ctx = model.dims.encoder_dims + model.dims.speaker_embedding_size
    out = {"param_groups": copy.deepcopy(optimizer_state["param_groups"]), "state": {}}
    for idx, st in optimizer_state["state"].items():
        name = names[int(idx)]
        target = wide_params[name]
        moved = {}
        for key, v in st.items():
            if torch.is_tensor(v) and v.shape == model.get_parameter(name).shape and v.shape != target.shape:
                moved[key] = _place(v, torch.zeros_like(target), *_index_maps(name, old, new, ctx), zero_new_inputs=False)
            else:
                moved[key] = v.clone() if torch.is_tensor(v) else v
        out["state"][idx] = moved
    return out


def widen_run(src: str | Path, out: str | Path, lstm_dims: int, *, seed: int = 0) -> dict[str, Any]:
    """Widen a training run directory (``synthesizer.pt``, optional ``optimizer.pt`` and
    ``log.jsonl``) into ``out``; returns what was done."""
    from .. import checkpoints

    src, out = Path(src), Path(out)
    if (out / "synthesizer.pt").exists():
        raise OptionsError(f"{out} already holds a synthesizer.pt; use an empty directory")
    ckpt = checkpoints.read_checkpoint(src / "synthesizer.pt", "synthesizer")
    model = checkpoints.build_model(ckpt)
    if not isinstance(model, Tacotron):
        raise OptionsError("only an rtclone Tacotron synthesizer can be widened")
    wide = widen_decoder(model, lstm_dims, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    step = int(model.step)
    checkpoints.save_model(wide, out / "synthesizer.pt", "synthesizer",
                           meta={**(ckpt.meta or {}), "step": step, "widened_from_lstm_dims": model.dims.lstm_dims})
    done = {"step": step, "lstm_dims": [model.dims.lstm_dims, lstm_dims],
            "values": [sum(p.numel() for p in model.parameters()), sum(p.numel() for p in wide.parameters())]}
    if (src / "optimizer.pt").is_file():
        saved = torch.load(src / "optimizer.pt", map_location="cpu", weights_only=True)
        torch.save({**saved, "optimizer": widen_adam_state(saved["optimizer"], model, wide)}, out / "optimizer.pt")
        done["optimizer"] = True
    if (src / "log.jsonl").is_file():
        shutil.copyfile(src / "log.jsonl", out / "log.jsonl")
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "widened": {"lstm_dims": done["lstm_dims"]}}) + "\n")
    return done


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rtclone.train.widen SRC_DIR OUT_DIR --lstm-dims W``."""
    p = argparse.ArgumentParser(prog="python -m rtclone.train.widen", description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="a synthesizer training run directory (synthesizer.pt [+ optimizer.pt, log.jsonl])")
    p.add_argument("out", help="an empty directory for the widened run")
    p.add_argument("--lstm-dims", type=int, required=True, help="decoder LSTM units (>= the model's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the new units' initialisation")
    a = p.parse_args(argv)
    print(json.dumps(widen_run(a.src, a.out, a.lstm_dims, seed=a.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
