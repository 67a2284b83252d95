"""Train the example Ridge regression on scikit-learn's bundled diabetes data (nothing is downloaded).

    python examples/sklearn-ridge/train.py            # writes examples/sklearn-ridge/model/
    scorewatch serve examples/sklearn-ridge/score.py --model-dir examples/sklearn-ridge/model

``train(out_dir)`` is importable, so ``scorewatch up`` can train on first use.
"""

from __future__ import annotations

import sys
from pathlib import Path

MODEL_FILE = "sklearn_regression_model.pkl"


def train(out_dir: str | Path) -> Path:
    """Fit Ridge(alpha=0.1) on the diabetes data and save it as ``<out_dir>/sklearn_regression_model.pkl``."""
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    model = Ridge(alpha=0.1).fit(X, y)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / MODEL_FILE
    joblib.dump(model, path)
    return path


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent / "model"
    print(f"saved {train(target)}")
