"""Which paths run: the optional C extensions, or the Python code they implement.

Two small C extensions make the common case of a telemetry path cheaper; each implements a Python
reference that stays the specification and takes every case the C leaves to it:

- ``_worker`` in the scoring worker: the common ``print()`` and finished request
  (reference: :class:`scorewatch.telemetry.recorder.Recorder`);
- ``_rows`` in the exporter process: the envelopes of the common rows
  (reference: :class:`scorewatch.telemetry.templates.Templates`).

``setup.py`` builds them when a C compiler is at hand (without one the install still succeeds). An
extension is used only when it was built against this row protocol (:func:`scorewatch.telemetry.rows.
fingerprint`, compiled in from ``_protocol.h``), its sources (when present) are the ones it was built
from, and the ``native`` setting is on (``SCOREWATCH_NATIVE=0`` forces the Python paths). The
service logs at start which path it runs, and ``/metrics`` shows it.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
from pathlib import Path
from typing import Any

from scorewatch.telemetry import rows

HERE = Path(__file__).resolve().parent
# Each extension's sources, in the order setup.py hashes them (its SOURCE_HASH).
SOURCES = {"_worker": ("_worker.c", "_protocol.h"), "_rows": ("_rows.c", "_protocol.h")}


def source_hash(name: str) -> str | None:
    """The digest of an extension's sources as setup.py computes it; None when they are not here
    (an installed package ships the built extension only)."""
    try:
        return hashlib.sha256(b"".join((HERE / source).read_bytes() for source in SOURCES[name])).hexdigest()
    except FileNotFoundError:
        return None


def _load(name: str) -> tuple[Any, str]:
    """The extension, or None; and why."""
    try:
        module = importlib.import_module(f"scorewatch.telemetry.{name}")
    except ImportError:
        return None, "not built (no C compiler at install)"
    if getattr(module, "PROTOCOL", None) != rows.fingerprint():
        return None, "built against another row protocol (rebuild it: pip install -e .)"
    expected = source_hash(name)
    if expected is not None and getattr(module, "SOURCE_HASH", None) != expected:
        return None, "older than its source (rebuild it: pip install -e .)"
    return module, "built"


_LOADED = {name: _load(name) for name in SOURCES}


def module(name: str, enabled: bool = True) -> Any:
    """The extension ``name`` (``"_worker"`` or ``"_rows"``) when it is usable and ``enabled``, else None."""
    return _LOADED[name][0] if enabled else None


def worker_module(enabled: bool = True) -> Any:
    return module("_worker", enabled)


def rows_module(enabled: bool = True) -> Any:
    return module("_rows", enabled)


def describe(name: str, enabled: bool) -> str:
    """One line for the log: which path ``name`` runs, and why."""
    if not enabled:
        return f"{name}: Python (the native setting is off: SCOREWATCH_NATIVE=0)"
    found, why = _LOADED[name]
    return f"{name}: C" if found is not None else f"{name}: Python ({name} {why})"


def compiler() -> str | None:
    """The C compiler setup.py would use (``$CC``, ``cc`` or ``gcc``), if there is one: with one, the
    extensions are expected to be built (tests/telemetry/test_native.py)."""
    import os

    return shutil.which(os.environ.get("CC", "") or "cc") or shutil.which("gcc")
