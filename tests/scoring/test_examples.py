"""The examples: each trains locally and serves with `scorewatch serve --model-dir`."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.scoring.conftest import serving

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "scorewatch" / "examples"


def _train_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_train_{name.replace('-', '_')}",
                                                  EXAMPLES / name / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sklearn_ridge_seed_style(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    model_path = _train_module("sklearn-ridge").train(tmp_path / "model")
    assert model_path.name == "sklearn_regression_model.pkl"
    with serving(EXAMPLES / "sklearn-ridge" / "score.py", tmp_path, "--model-dir", str(tmp_path / "model")) as svc:
        r = svc.post({"data": [[0.0] * 10, [0.05] * 10]})
        assert r.status_code == 200
        first, second = r.json()
        assert 100 < first < 200 and second != first  # the diabetes target's range
        assert isinstance(svc.post({"data": [[1, 2]]}).json(), str)  # wrong width: the error string
        assert "scored 2 rows" in svc.server.output()


def test_numpy_schema(tmp_path: Path) -> None:
    _train_module("numpy-schema").train(tmp_path / "model")
    with serving(EXAMPLES / "numpy-schema" / "score.py", tmp_path, "--model-dir", str(tmp_path / "model")) as svc:
        r = svc.post({"data": [[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]})
        assert r.json() == pytest.approx([3.0, 3.5], abs=0.01)
        assert svc.post({"data": "x"}).status_code == 400
        assert "numpy.ndarray" in svc.client.get("/swagger.json").text


def test_rawhttp(tmp_path: Path) -> None:
    _train_module("rawhttp").train(tmp_path / "model")
    with serving(EXAMPLES / "rawhttp" / "score.py", tmp_path, "--model-dir", str(tmp_path / "model")) as svc:
        r = svc.post(content=b"0.1,0.2\n4.9,5.1\n", headers={"content-type": "text/csv"})
        assert r.json() == {"labels": ["low", "high"]}
        assert r.headers["x-rows"] == "2"
        upload = svc.post(files={"file": ("rows.csv", b"0.2,4.8\n", "text/csv")})
        assert upload.json() == {"labels": ["mixed"]}
        assert svc.post(content=b"a,b", headers={"content-type": "text/csv"}).status_code == 400
        assert svc.client.get("/score").json()["labels"] == ["low", "high", "mixed"]
