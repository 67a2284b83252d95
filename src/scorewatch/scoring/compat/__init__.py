"""The ``azureml.*`` (and ``sklearn.externals.joblib``) modules entry scripts import, served by us.

Azure ML entry scripts import ``azureml.core.model``, ``azureml.contrib.services.aml_request`` and
friends. Inside the scoring process those names resolve to our implementations *only when the real
package is absent*: :class:`ShimFinder` sits at the end of ``sys.meta_path``, so the import system asks it
last, after every installed package had its chance. The module it returns is registered in
``sys.modules`` under the Azure name by the import system itself. Nothing is installed as a top-level
``azureml`` package, and nothing is imported until a script asks for it.

To add a shim, add a row to :data:`SHIMS`. A row whose implementation cannot be imported is skipped
(the script then gets the ordinary ``ModuleNotFoundError``), so a missing optional part never breaks
serving. The SDK's opt-in shim (``scorewatch.sdk.install_azureml()``) adds its rows (``azureml.core``
and the rest of Azure ML v1's SDK) to the same one finder: one table, one place that decides what an
``azureml`` name is, in a scoring process and in a notebook alike.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import types
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("scorewatch.scoring")

# Azure module name -> our implementation module.
SHIMS: dict[str, str] = {
    "azureml.core.model": "scorewatch.scoring.compat.model",
    "azureml.contrib.services.aml_request": "scorewatch.scoring.compat.aml_request",
    "azureml.contrib.services.aml_response": "scorewatch.scoring.compat.aml_response",
    # Model data collection, provided by the telemetry part (skipped while those modules do not exist).
    "azureml.monitoring": "scorewatch.telemetry.azureml_monitoring",
    "azureml.ai.monitoring": "scorewatch.telemetry.azureml_ai_monitoring",
    # Seed-era scripts do `from sklearn.externals import joblib` (removed in scikit-learn 0.23).
    "sklearn.externals.joblib": "joblib",
}


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


# ``sklearn`` and ``sklearn.externals`` are never faked: the joblib shim only applies under a real sklearn.
_REAL_ONLY = {"sklearn", "sklearn.externals"}


class _AliasLoader(importlib.abc.Loader):
    """Loads an Azure name as a module that exposes our implementation's names.

    A fresh module (not the implementation itself) so the import system's bookkeeping (``__spec__``,
    ``__name__``) never rewrites our own module; attribute lookups fall through to the implementation,
    so module-level state stays in one place.
    """

    def __init__(self, target: types.ModuleType | None, package: bool = False) -> None:
        self.target = target
        self.package = package  # other shims live below it (``azureml.core`` holds ``azureml.core.model``)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        target = self.target
        if target is None or self.package:
            module.__path__ = []
        if target is None:  # an intermediate package
            return module
        public = getattr(target, "__all__", None) or [n for n in vars(target) if not n.startswith("_")]
        for name in public:
            setattr(module, name, getattr(target, name))
        module.__getattr__ = lambda name: getattr(target, name)  # type: ignore[method-assign]
        module.__doc__ = target.__doc__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        if self.target is not None:
            # `import azureml.core.model` then `azureml.core.model.Model` needs the parent attribute.
            parent, _, child = module.__name__.rpartition(".")
            if parent in sys.modules:
                setattr(sys.modules[parent], child, module)


class ShimFinder(importlib.abc.MetaPathFinder):
    """Resolves the names of its table (:data:`SHIMS`, plus rows added with :func:`install`) when no
    installed package provides them."""

    def __init__(self) -> None:
        self.shims = dict(SHIMS)
        self.packages: set[str] = set()
        self._index()

    def add(self, shims: dict[str, str]) -> None:
        self.shims.update(shims)
        self._index()
        for name in shims:  # an empty package made earlier gets its body on the next import
            loader = getattr(sys.modules.get(name), "__loader__", None)
            if isinstance(loader, _AliasLoader) and loader.target is None:
                del sys.modules[name]

    def _index(self) -> None:
        # Intermediate packages (``azureml``, ``azureml.core``, ...): made empty unless a row gives them a body.
        self.packages = {parent for name in self.shims for parent in _parents(name)} - _REAL_ONLY

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: Any = None) -> importlib.machinery.ModuleSpec | None:
        implementation = self.shims.get(fullname)
        package = fullname in self.packages
        if implementation is None:
            if package:
                return importlib.machinery.ModuleSpec(fullname, _AliasLoader(None), is_package=True)
            return None
        try:
            module = importlib.import_module(implementation)
        except ImportError:
            log.debug("shim %s -> %s unavailable", fullname, implementation)
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(module, package), is_package=package)


def install(shims: dict[str, str] | None = None) -> ShimFinder:
    """Add the finder at the end of ``sys.meta_path`` (idempotent; called by the scoring worker), with
    ``shims`` added to its table; returns it."""
    finder = next((f for f in sys.meta_path if isinstance(f, ShimFinder)), None)
    if finder is None:
        finder = ShimFinder()
        sys.meta_path.append(finder)
    if shims:
        finder.add(shims)
    return finder
