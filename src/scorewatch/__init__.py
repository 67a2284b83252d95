"""scorewatch: serve machine-learning models as HTTP scoring services and watch them.

The public Python surface is listed in ``__all__`` (``tests/test_public_api.py`` checks it). The
telemetry helpers are for use inside an entry script (``score.py``); they record into the running
service's telemetry and do nothing when monitoring is off.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "track_dependency", "track_event", "track_metric"]


def __getattr__(name: str) -> Any:
    # Imported lazily so `import scorewatch` (and the CLI) stay light.
    if name in ("track_dependency", "track_event", "track_metric"):
        from scorewatch.telemetry import api

        return getattr(api, name)
    raise AttributeError(f"module 'scorewatch' has no attribute {name!r}")
