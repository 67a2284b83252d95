"""``azureml.core.model.Model`` inside the scoring process: finding a deployed model's files.

Azure lays models out in two ways, and scripts from both eras must find them:

- ``AZUREML_MODEL_DIR`` (v2 and late v1): ``<dir>/<file>``, or ``<dir>/<name>/<version>/...`` when
  several models are deployed; the directory may itself be ``.../<name>/<version>``.
- azureml-core's own layout: ``$AML_APP_ROOT/azureml-models/<name>/<version>/...`` (the working
  directory when ``AML_APP_ROOT`` is unset). With no version given, the highest one wins.

When a version directory holds exactly one entry, that entry is the model path (azureml-core does the
same), so ``get_model_path("model.pkl")`` returns the file, not its folder.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["Model", "ModelNotFoundException", "deployed_models"]

MODELS_DIR = "azureml-models"


class ModelNotFoundException(FileNotFoundError):  # noqa: N818 - the name azureml-core scripts catch
    """No deployed model matches the name (and version) asked for."""


class Model:
    """The part of ``azureml.core.model.Model`` a scoring script uses: ``get_model_path``."""

    @staticmethod
    def get_model_path(model_name: str, version: int | str | None = None, _workspace: object = None) -> str:
        """The local path of a deployed model's file or folder.

        Raises :class:`ModelNotFoundException` (a ``FileNotFoundError``) naming every place searched.
        """
        searched: list[str] = []
        for root in _roots():
            found = _find(root, model_name, version, searched)
            if found is not None:
                return str(found)
        wanted = model_name if version is None else f"{model_name} version {version}"
        raise ModelNotFoundException(f"model {wanted} not found; searched: {', '.join(searched) or '(nothing)'}")


def _roots() -> list[Path]:
    roots = []
    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    if model_dir:
        roots.append(Path(model_dir))
    roots.append(Path(os.environ.get("AML_APP_ROOT") or ".") / MODELS_DIR)
    return roots


def _versions(folder: Path) -> list[int]:
    try:
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    except OSError:
        return []


def _collapse(folder: Path) -> Path:
    try:
        children = list(folder.iterdir())
    except OSError:
        return folder
    return children[0] if len(children) == 1 else folder


def _find(root: Path, name: str, version: int | str | None, searched: list[str]) -> Path | None:
    candidate = root / name
    searched.append(str(candidate))
    versions = _versions(candidate) if candidate.is_dir() else []
    if versions:
        if version is None:
            return _collapse(candidate / str(versions[-1]))
        chosen = candidate / str(version)
        searched.append(str(chosen))
        return _collapse(chosen) if chosen.is_dir() else None
    if candidate.exists() and version is None:
        return candidate
    # AZUREML_MODEL_DIR may point at <name>/<version> itself.
    if root.name.isdigit() and root.parent.name == name and (version is None or str(version) == root.name):
        return _collapse(root)
    return None


def deployed_models(model_dir: str | os.PathLike[str] | None, app_root: str | os.PathLike[str] | None) -> list[str]:
    """``"name:version"`` for each model found in the two layouts (for telemetry's ``Models`` field)."""
    found: list[str] = []
    roots = [Path(model_dir)] if model_dir else []
    if app_root:
        roots.append(Path(app_root) / MODELS_DIR)
    for root in roots:
        if not root.is_dir():
            continue
        if root.name.isdigit() and root.parent.name:
            found.append(f"{root.parent.name}:{root.name}")
            continue
        for entry in sorted(root.iterdir()):
            versions = _versions(entry) if entry.is_dir() else []
            if versions:
                found.extend(f"{entry.name}:{v}" for v in versions)
            elif not entry.name.startswith("."):
                found.append(f"{entry.name}:1")
    return found
