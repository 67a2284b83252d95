"""The azureml.* shims: present only through the finder, only where no real package provides them."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator

import pytest

from scorewatch.scoring import compat


@pytest.fixture()
def shims() -> Iterator[None]:
    before = set(sys.modules)
    finders = list(sys.meta_path)
    compat.install()
    compat.install()  # idempotent
    try:
        yield
    finally:
        sys.meta_path[:] = finders
        for name in set(sys.modules) - before:
            if name.startswith(("azureml", "sklearn.externals.joblib")):
                del sys.modules[name]


def test_not_importable_without_the_finder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if not isinstance(f, compat.ShimFinder)])
    for name in [n for n in sys.modules if n == "azureml" or n.startswith("azureml.")]:
        monkeypatch.delitem(sys.modules, name)
    if importlib.util.find_spec("azureml") is not None:
        pytest.skip("a real azureml package is installed")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("azureml.core.model")


def test_azure_names_resolve_to_our_implementations(shims: None) -> None:
    assert sum(isinstance(f, compat.ShimFinder) for f in sys.meta_path) == 1
    from azureml.contrib.services.aml_request import AMLRequest, rawhttp
    from azureml.contrib.services.aml_response import AMLResponse
    from azureml.core.model import Model

    from scorewatch.scoring.compat import aml_request, aml_response, model

    assert Model is model.Model
    assert (AMLRequest, rawhttp) == (aml_request.AMLRequest, aml_request.rawhttp)
    assert AMLResponse is aml_response.AMLResponse
    import azureml.core.model

    assert azureml.core.model.Model is Model


def test_sklearn_externals_joblib_is_joblib(shims: None) -> None:
    import joblib
    from sklearn.externals import joblib as old_style

    assert (old_style.load, old_style.dump, old_style.Parallel) == (joblib.load, joblib.dump, joblib.Parallel)
    assert sys.modules["sklearn.externals.joblib"] is old_style


def test_a_shim_whose_implementation_is_missing_is_an_ordinary_import_error(
        shims: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(compat.SHIMS, "azureml.widgets", "scorewatch.no_such_module")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("azureml.widgets")


def test_telemetry_shims_are_in_the_table() -> None:
    assert compat.SHIMS["azureml.monitoring"] == "scorewatch.telemetry.azureml_monitoring"
    assert compat.SHIMS["azureml.ai.monitoring"] == "scorewatch.telemetry.azureml_ai_monitoring"


def test_aml_response_json_str() -> None:
    from scorewatch.scoring.compat.aml_response import AMLResponse

    response = AMLResponse({"a": [1, 2]}, 202, {"X-One": "1"}, json_str=True)
    assert (response.status_code, response.get_data(), response.mimetype) == (202, b'{"a":[1,2]}', "application/json")
    assert response.headers["X-One"] == "1"
    assert AMLResponse("plain", 200).mimetype == "text/html"


def test_the_sdk_rows_join_the_same_finder_and_give_an_empty_package_its_body(shims: None) -> None:
    if _installed("azureml-core"):
        pytest.skip("a real azureml-core is installed")
    importlib.import_module("azureml.core.model")  # as a scoring process does: azureml.core made empty
    assert not hasattr(sys.modules["azureml.core"], "Workspace")
    from scorewatch.sdk import AZUREML_SHIMS, Workspace, install_azureml

    install_azureml()
    assert sum(isinstance(f, compat.ShimFinder) for f in sys.meta_path) == 1  # one finder, one table
    finder = next(f for f in sys.meta_path if isinstance(f, compat.ShimFinder))
    assert finder.shims["azureml.core.model"] == AZUREML_SHIMS["azureml.core.model"] == "scorewatch.sdk.model"
    assert importlib.import_module("azureml.core").Workspace is Workspace
    assert compat.SHIMS["azureml.core.model"] == "scorewatch.scoring.compat.model"  # the scoring table is unchanged


def _installed(distribution: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
