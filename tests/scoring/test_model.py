"""Model.get_model_path in both Azure layouts, and the seed documentation's score.py served as written."""

from __future__ import annotations

import shutil
from pathlib import Path

import joblib
import pytest

from scorewatch.scoring.compat.model import Model, ModelNotFoundException, deployed_models
from tests.scoring.conftest import SCRIPTS, serving


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("AZUREML_MODEL_DIR", raising=False)
    monkeypatch.setenv("AML_APP_ROOT", str(tmp_path / "app"))
    return tmp_path


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"model")
    return path


def test_file_directly_under_the_model_dir(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_file = _touch(clean_env / "models" / "model.pkl")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(clean_env / "models"))
    assert Model.get_model_path("model.pkl") == str(model_file)


def test_name_version_layout_under_the_model_dir(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _touch(clean_env / "models" / "ridge" / "1" / "model.pkl")
    newest = _touch(clean_env / "models" / "ridge" / "3" / "model.pkl")
    _touch(clean_env / "models" / "ridge" / "10" / "a.bin")
    _touch(clean_env / "models" / "ridge" / "10" / "b.bin")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(clean_env / "models"))
    assert Model.get_model_path("ridge") == str(clean_env / "models" / "ridge" / "10")  # highest, a folder
    assert Model.get_model_path("ridge", version=3) == str(newest)  # single file: the file itself
    with pytest.raises(ModelNotFoundException, match="ridge version 7"):
        Model.get_model_path("ridge", version=7)


def test_model_dir_pointing_at_name_version(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_file = _touch(clean_env / "azureml-models" / "ridge" / "2" / "model.pkl")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(model_file.parent))
    assert Model.get_model_path("ridge") == str(model_file)
    assert Model.get_model_path("model.pkl") == str(model_file)


def test_azureml_core_layout_under_app_root(clean_env: Path) -> None:
    _touch(clean_env / "app" / "azureml-models" / "sk.pkl" / "1" / "sk.pkl")
    newest = _touch(clean_env / "app" / "azureml-models" / "sk.pkl" / "2" / "sk.pkl")
    assert Model.get_model_path("sk.pkl") == str(newest)
    assert deployed_models(None, clean_env / "app") == ["sk.pkl:1", "sk.pkl:2"]


def test_missing_model_names_every_place_searched(clean_env: Path) -> None:
    with pytest.raises(FileNotFoundError, match="azureml-models"):
        Model.get_model_path("nothing")


def test_seed_score_py_runs_as_written(tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge

    app_root = tmp_path / "app"
    shutil.copytree(SCRIPTS / "seed_model", app_root)
    model = Ridge().fit([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [1.0, 2.0, 3.0])
    model_path = app_root / "azureml-models" / "sklearn_regression_model.pkl" / "1" / "sklearn_regression_model.pkl"
    model_path.parent.mkdir(parents=True)
    joblib.dump(model, model_path)
    with serving(app_root / "score.py", tmp_path, env={"AML_APP_ROOT": str(app_root)}) as svc:
        r = svc.post({"data": [[1.0, 1.0]]})
        assert r.status_code == 200, svc.server.output()
        assert r.json() == pytest.approx(model.predict([[1.0, 1.0]]).tolist())
        error = svc.post({"data": "not rows"})
        assert error.status_code == 200 and isinstance(error.json(), str)  # `return error`
