"""The one part of the build pyproject.toml cannot declare: the optional C parts of telemetry.

``_rows`` writes the common rows' envelopes (in the exporter process); ``_worker`` records a request
and a print() (in the scoring worker). ``optional=True``: without a C compiler the install still
succeeds, and scorewatch does the same in Python instead (the same rows and bytes, more CPU; see
src/scorewatch/telemetry/templates.py and TelemetryMonitor in monitor.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("scorewatch.telemetry._rows", ["src/scorewatch/telemetry/_rows.c"], optional=True),
    Extension("scorewatch.telemetry._worker", ["src/scorewatch/telemetry/_worker.c"], optional=True),
])
