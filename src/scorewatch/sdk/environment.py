"""``Environment`` (``azureml.core.environment``) and ``CondaDependencies``
(``azureml.core.conda_dependencies``): what a service asks to run with.

They are accepted and recorded with the deployment. A deployed service runs in the interpreter the
hub runs in (no image is built): packages it lacks are a warning in the service's log, not a failure
(see docs/deployments.md). Conda files are read and written in the subset Azure's own files use
(``name``, ``channels``, ``dependencies`` with a ``pip`` list).
"""

from __future__ import annotations

import builtins
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scorewatch.sdk.exceptions import UserErrorException

if TYPE_CHECKING:
    from scorewatch.sdk.workspace import Workspace

__all__ = ["CondaDependencies", "Environment"]

DEFAULT_PYTHON = "3.8"


class CondaDependencies:
    """A conda environment specification: conda packages, pip packages, channels."""

    DEFAULT_NAME = "project_environment"

    def __init__(self, conda_dependencies_file_path: str | None = None, _underlying_structure: dict[str, Any] | None = None) -> None:
        self._name = self.DEFAULT_NAME
        self._channels: builtins.list[str] = []
        self._conda: builtins.list[str] = []
        self._pip: builtins.list[str] = []
        self._pip_options: builtins.list[str] = []
        if conda_dependencies_file_path is not None:
            self._load(read_conda_file(Path(conda_dependencies_file_path)))
        elif _underlying_structure is not None:
            self._load(_underlying_structure)

    def _load(self, spec: dict[str, Any]) -> None:
        self._name = str(spec.get("name") or self.DEFAULT_NAME)
        self._channels = [str(c) for c in spec.get("channels") or []]
        for item in spec.get("dependencies") or []:
            if isinstance(item, dict) and "pip" in item:
                for pip in item["pip"] or []:
                    (self._pip_options if str(pip).startswith("-") else self._pip).append(str(pip))
            elif isinstance(item, str):
                self._conda.append(item)

    @staticmethod
    def create(pip_indexurl: str | None = None, pip_packages: builtins.list[str] | None = None,
               conda_packages: builtins.list[str] | None = None, python_version: str | None = None,
               pin_sdk_version: bool = True) -> CondaDependencies:
        """A specification with these packages (and Python ``python_version``, default 3.8)."""
        deps = CondaDependencies()
        deps.set_python_version(python_version or DEFAULT_PYTHON)
        for package in conda_packages or []:
            deps.add_conda_package(package)
        if pip_indexurl:
            deps._pip_options.append(f"--index-url {pip_indexurl}")
        for package in pip_packages or []:
            deps.add_pip_package(package)
        return deps

    def set_python_version(self, version: str) -> None:
        self._conda = [p for p in self._conda if _name(p) != "python"]
        self._conda.insert(0, f"python={version}")

    def add_conda_package(self, conda_package: str) -> None:
        if conda_package not in self._conda:
            self._conda = [p for p in self._conda if _name(p) != _name(conda_package)] + [conda_package]

    def add_pip_package(self, pip_package: str) -> None:
        if pip_package not in self._pip:
            self._pip = [p for p in self._pip if _name(p) != _name(pip_package)] + [pip_package]

    def remove_conda_package(self, conda_package: str) -> None:
        self._conda = [p for p in self._conda if _name(p) != _name(conda_package)]

    def remove_pip_package(self, pip_package: str) -> None:
        self._pip = [p for p in self._pip if _name(p) != _name(pip_package)]

    def add_channel(self, channel: str) -> None:
        if channel not in self._channels:
            self._channels.append(channel)

    @property
    def conda_packages(self) -> builtins.list[str]:
        return [p for p in self._conda if _name(p) != "python"]

    @property
    def pip_packages(self) -> builtins.list[str]:
        return list(self._pip)

    def get_python_version(self) -> str | None:
        for package in self._conda:
            if _name(package) == "python":
                return package.split("=", 1)[1].lstrip("=") if "=" in package else None
        return None

    def serialize_to_string(self) -> str:
        """The specification as a conda environment file."""
        lines = ["# Conda environment specification. The dependencies defined in this file will",
                 "# be automatically provisioned for runs with userManagedDependencies=False.", "",
                 "# Details about the Conda environment file format:",
                 "# https://conda.io/docs/user-guide/tasks/manage-environments.html#create-env-file-manually", "",
                 f"name: {self._name}", "dependencies:"]
        lines += [f"- {package}" for package in self._conda]
        if self._pip or self._pip_options:
            lines.append("- pip:")
            lines += [f"  - {package}" for package in self._pip_options + self._pip]
        if self._channels:
            lines.append("channels:")
            lines += [f"- {channel}" for channel in self._channels]
        return "\n".join(lines) + "\n"

    def save(self, path: str | None = None) -> str:
        target = Path(path or "conda_dependencies.yml")
        target.write_text(self.serialize_to_string())
        return str(target)

    def save_to_file(self, base_directory: str, conda_file_path: str | None = None) -> str:
        return self.save(os.path.join(base_directory, conda_file_path or "conda_dependencies.yml"))

    def __repr__(self) -> str:
        return self.serialize_to_string()


class PythonSection:
    def __init__(self) -> None:
        self.conda_dependencies = CondaDependencies()
        self.user_managed_dependencies = False
        self.interpreter_path = "python"
        self.conda_dependencies_file: str | None = None


class DockerSection:
    def __init__(self) -> None:
        self.base_image: str | None = None
        self.base_dockerfile: str | None = None
        self.enabled = False


class Environment:
    """A named environment. Deployed services run in the hub's interpreter whatever it names."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.version: str | None = None
        self.python = PythonSection()
        self.docker = DockerSection()
        self.environment_variables: dict[str, str] = {}
        self.inferencing_stack_version: str | None = None

    @staticmethod
    def from_conda_specification(name: str, file_path: str) -> Environment:
        environment = Environment(name)
        environment.python.conda_dependencies = CondaDependencies(conda_dependencies_file_path=file_path)
        return environment

    @staticmethod
    def from_pip_requirements(name: str, file_path: str, pip_version: str | None = None) -> Environment:
        environment = Environment(name)
        try:
            text = Path(file_path).read_text()
        except OSError as exc:
            raise UserErrorException(f"cannot read the pip requirements file {file_path}: {exc.strerror}") from None
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                environment.python.conda_dependencies.add_pip_package(line)
        if pip_version:
            environment.python.conda_dependencies.add_conda_package(f"pip={pip_version}")
        return environment

    @staticmethod
    def get(workspace: Workspace, name: str, version: str | None = None, label: str | None = None) -> Environment:
        """An environment by name (Azure's curated ones included): here, one that lists nothing."""
        environment = Environment(name)
        environment.version = version
        return environment

    def register(self, workspace: Workspace) -> Environment:
        """Accepted; the environment is recorded with each deployment that uses it."""
        self.version = self.version or "1"
        return self

    def _spec(self) -> dict[str, Any]:
        deps = self.python.conda_dependencies
        return {"name": self.name, "version": self.version or "", "python_version": deps.get_python_version() or "",
                "conda_packages": deps.conda_packages, "pip_packages": deps.pip_packages,
                "environment_variables": dict(self.environment_variables)}

    def __repr__(self) -> str:
        return f"Environment(Name: {self.name},\nVersion: {self.version})"


def _name(package: str) -> str:
    return re.split(r"[\s=<>!~\[]", package.strip(), maxsplit=1)[0].lower()


def read_conda_file(path: Path) -> dict[str, Any]:
    """A conda environment file (``name``, ``channels``, ``dependencies`` with a ``pip`` list) as a dict."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserErrorException(f"cannot read the conda specification {path}: {exc.strerror}") from None
    spec: dict[str, Any] = {}
    section: str | None = None
    column_of_items: int | None = None  # where the section's own "- item" lines start
    pip: builtins.list[str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        column, item = len(line) - len(line.lstrip()), line.strip()
        if column == 0 and not item.startswith("-"):
            key, sep, value = item.partition(":")
            if not sep:
                raise UserErrorException(f"{path}:{number}: expected 'key: value', not {item!r}")
            section, column_of_items, pip = key.strip(), None, None
            spec[section] = value.strip().strip("'\"") or []
            continue
        if not item.startswith("-") or section is None or not isinstance(spec[section], list):
            raise UserErrorException(f"{path}:{number}: not a line of a conda environment file: {item!r}")
        value = item[1:].strip().strip("'\"")
        column_of_items = column if column_of_items is None else column_of_items
        if pip is not None and column > column_of_items:
            pip.append(value)
        elif section == "dependencies" and value == "pip:":
            pip = []
            spec[section].append({"pip": pip})
        else:
            pip = None
            spec[section].append(value)
    return spec
