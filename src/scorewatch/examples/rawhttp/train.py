"""Compute class centroids of synthetic 2-D data (a nearest-centroid classifier) into ``centroids.npz``.

    python examples/rawhttp/train.py
    scorewatch serve examples/rawhttp/score.py --model-dir examples/rawhttp/model
    curl -X POST --data-binary $'0.1,0.2\n4.9,5.1' -H 'Content-Type: text/csv' localhost:5001/score
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def train(out_dir: str | Path) -> Path:
    rng = np.random.default_rng(3)
    centres = {"low": (0.0, 0.0), "high": (5.0, 5.0), "mixed": (0.0, 5.0)}
    labels = list(centres)
    centroids = np.array([rng.normal(loc=centres[name], scale=0.5, size=(200, 2)).mean(axis=0) for name in labels])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "centroids.npz"
    np.savez(path, centroids=centroids, labels=np.array(labels))
    return path


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent / "model"
    print(f"saved {train(target)}")
