"""Every telemetry test runs twice: with the C extensions (``c_paths``), and with ``SCOREWATCH_NATIVE=0``
(``python_paths``), as simplejson runs its suite with and without its speedups.

A test reads the mode from the ``native`` fixture (for what it builds itself: ``Settings(native=...)``,
``Templates(native=...)``); servers it starts inherit ``SCOREWATCH_NATIVE``. Where a C compiler is at
hand the extensions must be built and current, so the ``c_paths`` runs fail rather than skip; without
one, they are skipped, saying so (there is no C path to test).
"""

import pytest

from scorewatch.telemetry import native as native_code
from tests.telemetry.receiver import Receiver


def require_extensions() -> None:
    """Fail (a compiler is here) or skip (none is) unless both extensions are usable."""
    missing = [native_code.describe(name, True) for name in native_code.SOURCES if native_code.module(name) is None]
    if not missing:
        return
    if native_code.compiler():
        pytest.fail(f"a C compiler is here, but the extensions are not usable: {'; '.join(missing)}")
    pytest.skip(f"no C compiler at install, so no C paths: {'; '.join(missing)}")


@pytest.fixture(params=["c_paths", "python_paths"], autouse=True)
def native(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    on = request.param == "c_paths"
    if on:
        require_extensions()
    monkeypatch.setenv("SCOREWATCH_NATIVE", "1" if on else "0")
    return on


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r
