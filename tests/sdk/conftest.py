"""The SDK against a real hub; the azureml shim installed per test and removed afterwards."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scorewatch import examples
from tests.deploy import conftest as deployments
from tests.deploy.conftest import Hub

# The same module-scoped fixtures as the deployment tests: a workspace folder and a hub in it.
module_tmp = deployments.module_tmp
hub = deployments.hub


@pytest.fixture
def workspace_env(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Hub:
    """SCOREWATCH_HOME names the hub's workspace, as a notebook's environment would (from_config() finds it)."""
    monkeypatch.setenv("SCOREWATCH_HOME", str(hub.home))
    return hub


@pytest.fixture
def azureml() -> Iterator[None]:
    """install_azureml() for one test; the import system as it was afterwards."""
    try:
        importlib.metadata.distribution("azureml-core")
        pytest.skip("the real azureml-core is installed: the shim leaves it alone")
    except importlib.metadata.PackageNotFoundError:
        pass
    before, finders = set(sys.modules), list(sys.meta_path)
    from scorewatch.sdk import install_azureml

    install_azureml()
    try:
        yield
    finally:
        sys.meta_path[:] = finders
        for name in set(sys.modules) - before:
            if name == "azureml" or name.startswith("azureml."):
                del sys.modules[name]


@pytest.fixture(scope="module")
def seed_app(module_tmp: Path) -> Path:
    """The seed documentation's score.py and its trained model (the sklearn-ridge example), in a folder."""
    example = examples.find("sklearn-ridge")
    folder = module_tmp / "seed-app"
    folder.mkdir()
    shutil.copy(example.score_py, folder / "score.py")
    spec = importlib.util.spec_from_file_location("seed_train", example.path / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.train(module_tmp / "seed-model")
    return folder
