"""Fit a linear model with numpy's least squares on synthetic data and save it as ``linear.npz``.

    python examples/numpy-schema/train.py
    scorewatch serve examples/numpy-schema/score.py --model-dir examples/numpy-schema/model
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def train(out_dir: str | Path) -> Path:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(500, 4))
    true_weights = np.array([0.5, -1.0, 2.0, 0.25])
    y = X @ true_weights + 3.0 + rng.normal(scale=0.01, size=500)
    solution, *_ = np.linalg.lstsq(np.hstack([X, np.ones((500, 1))]), y, rcond=None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "linear.npz"
    np.savez(path, weights=solution[:4], bias=solution[4])
    return path


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent / "model"
    print(f"saved {train(target)}")
