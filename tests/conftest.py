"""Every test runs with its own default workspace, never the developer's (found from the current
directory, as git finds its repository): SCOREWATCH_HOME points into a temporary directory."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    previous = os.environ.get("SCOREWATCH_HOME")
    os.environ["SCOREWATCH_HOME"] = str(tmp_path_factory.mktemp("default-home") / ".scorewatch")
    yield
    if previous is None:
        os.environ.pop("SCOREWATCH_HOME", None)
    else:
        os.environ["SCOREWATCH_HOME"] = previous
