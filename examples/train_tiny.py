#!/usr/bin/env python3
"""A tiny, deterministic training job that follows the gigafactory checkpoint protocol.

It trains a logistic-regression classifier with minibatch SGD on a seeded
synthetic data set (NumPy only) and shows what every preemptible job on the
platform does (DESIGN.md §4):

* it resumes from ``$GIGAFACTORY_CHECKPOINT_DIR/checkpoint.npz`` when one exists;
* it checkpoints every ``--checkpoint-every`` steps, and on **SIGTERM**: it finishes
  the current step, writes the checkpoint and exits with status **143**
  (``PREEMPTED_EXIT_CODE`` = 128 + SIGTERM), which executors report as
  ``preempted``;
* checkpoints and the result are written atomically (temporary file, fsync,
  ``os.replace``), so a kill at any moment leaves the previous checkpoint intact;
* at the end it prints and writes ``result.json`` (steps, final loss, SHA-256 of
  the weights) into the checkpoint directory and exits 0.

Training is a pure function of ``--seed``, ``--steps`` and the hyper-parameters:
the minibatch of step ``t`` is drawn from a generator seeded with ``(seed, t)``
and the checkpoint stores the exact float64 weights, so a run that is preempted
and resumed any number of times ends with the same weights hash as an
uninterrupted run. Resuming with different settings is refused (exit status 2).

Try it::

    GIGAFACTORY_CHECKPOINT_DIR=/tmp/ck python examples/train_tiny.py --steps 300 --step-sleep 0.01
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from numpy.typing import NDArray

PREEMPTED_EXIT_CODE = 143  # same value as gigafactory.executors.PREEMPTED_EXIT_CODE
CHECKPOINT = "checkpoint.npz"
RESULT = "result.json"

Array = NDArray[np.float64]


class SettingsMismatch(Exception):
    """The checkpoint was written by a run with other settings."""


class Preempted:
    """Set by the SIGTERM handler; the training loop checks it after every step."""

    requested = False

    @classmethod
    def handler(cls, signum: int, frame: FrameType | None) -> None:
        cls.requested = True


def make_dataset(seed: int, samples: int, features: int) -> tuple[Array, Array]:
    """Linearly separable-ish binary labels from a hidden weight vector plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, features))
    w_true = rng.standard_normal(features)
    y = (x @ w_true + 0.5 * rng.standard_normal(samples) > 0).astype(np.float64)
    return x, y


def loss_and_grad(w: Array, x: Array, y: Array) -> tuple[float, Array]:
    """Mean binary cross-entropy of ``sigmoid(x @ w)`` and its gradient."""
    z = x @ w
    p = 1.0 / (1.0 + np.exp(-z))
    loss = float(np.mean(np.logaddexp(0.0, z) - y * z))  # stable log(1 + e^z) - y z
    return loss, x.T @ (p - y) / len(y)


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temporary file, fsync it, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(directory: Path, step: int, w: Array, config: dict[str, Any]) -> None:
    atomic_write(
        directory / CHECKPOINT,
        lambda fh: np.savez(fh, step=np.int64(step), w=w, config=json.dumps(config, sort_keys=True)),
    )


def load_checkpoint(directory: Path, config: dict[str, Any]) -> tuple[int, Array] | None:
    """``(step, weights)`` from the checkpoint, ``None`` if there is none."""
    path = directory / CHECKPOINT
    if not path.exists():
        return None
    with np.load(path) as data:
        saved = json.loads(str(data["config"]))
        if saved != config:
            diff = sorted(k for k in config if saved.get(k) != config[k])
            raise SettingsMismatch(
                f"{path}: checkpoint was written with different settings ({', '.join(diff)}); "
                "use another checkpoint dir or the same options"
            )
        return int(data["step"]), np.array(data["w"], dtype=np.float64)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=400, help="SGD steps in total (default 400)")
    ap.add_argument("--seed", type=int, default=0, help="data and minibatch seed (default 0)")
    ap.add_argument("--lr", type=float, default=0.5, help="learning rate (default 0.5)")
    ap.add_argument("--batch", type=int, default=64, help="minibatch size (default 64)")
    ap.add_argument("--samples", type=int, default=2048, help="data set size (default 2048)")
    ap.add_argument("--features", type=int, default=16, help="features (default 16)")
    ap.add_argument("--step-sleep", type=float, default=0.0,
                    help="seconds to sleep per step, to make the job slow enough to preempt")
    ap.add_argument("--checkpoint-every", type=int, default=50,
                    help="checkpoint every N steps (default 50; 0: only on SIGTERM)")
    ap.add_argument("--log-every", type=int, default=25, help="print progress every N steps")
    ap.add_argument("--checkpoint-dir", type=Path, default=None,
                    help="default: $GIGAFACTORY_CHECKPOINT_DIR, else ./checkpoints")
    args = ap.parse_args(argv)
    for name in ("steps", "batch", "samples", "features"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, Preempted.handler)
    args = parse_args(argv)
    directory = args.checkpoint_dir or Path(os.environ.get("GIGAFACTORY_CHECKPOINT_DIR", "checkpoints"))
    directory.mkdir(parents=True, exist_ok=True)
    config = {k: getattr(args, k) for k in ("steps", "seed", "lr", "batch", "samples", "features")}
    restart = os.environ.get("GIGAFACTORY_RESTART_COUNT", "0")

    x, y = make_dataset(args.seed, args.samples, args.features)
    try:
        resumed = load_checkpoint(directory, config)
    except SettingsMismatch as exc:
        print(f"train_tiny: error: {exc}", file=sys.stderr)
        return 2
    step, w = resumed if resumed is not None else (0, np.zeros(args.features))
    origin = f"resumed from step {step}" if resumed is not None else "starting from scratch"
    print(f"train_tiny: restart_count={restart}, {origin} of {args.steps}", flush=True)

    while step < args.steps:
        rng = np.random.default_rng([args.seed, step])
        batch = rng.integers(0, args.samples, size=args.batch)
        loss, grad = loss_and_grad(w, x[batch], y[batch])
        w = w - args.lr * grad
        step += 1
        if args.log_every and step % args.log_every == 0:
            print(f"step {step}/{args.steps} minibatch loss {loss:.6f}", flush=True)
        if Preempted.requested:
            save_checkpoint(directory, step, w, config)
            print(f"train_tiny: SIGTERM: checkpoint saved at step {step}; exiting with "
                  f"{PREEMPTED_EXIT_CODE} (preempted)", flush=True)
            return PREEMPTED_EXIT_CODE
        if args.checkpoint_every and step % args.checkpoint_every == 0:
            save_checkpoint(directory, step, w, config)
        if args.step_sleep > 0:
            time.sleep(args.step_sleep)

    save_checkpoint(directory, step, w, config)
    final_loss, _ = loss_and_grad(w, x, y)
    accuracy = float(np.mean(((x @ w) > 0) == (y > 0.5)))
    result = {
        "steps": step,
        "seed": args.seed,
        "final_loss": final_loss,
        "accuracy": accuracy,
        "weights_sha256": hashlib.sha256(w.tobytes()).hexdigest(),
    }
    atomic_write(directory / RESULT, lambda fh: fh.write(json.dumps(result, indent=2).encode()))
    print(f"train_tiny: done: steps={step} final_loss={final_loss:.12f} "
          f"accuracy={accuracy:.4f} weights_sha256={result['weights_sha256']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
