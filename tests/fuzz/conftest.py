"""Property tests (hypothesis) for what hostile clients control: track and OTLP bodies, KQL text.

One settings profile keeps their CI budget to a couple of minutes (no per-example deadline: the
machine is shared and timing is noisy). ``HYPOTHESIS_PROFILE=long`` digs deeper by hand.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=150, deadline=None, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def budget(examples: int) -> int:
    """``examples`` in CI; thirty times as many under the ``long`` profile."""
    return examples * (30 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 1)
