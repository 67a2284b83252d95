"""The one part of the build pyproject.toml cannot declare: the optional C writer of telemetry rows.

``optional=True``: without a C compiler the install still succeeds, and scorewatch builds those
envelopes in Python instead (the same bytes, more CPU; see src/scorewatch/telemetry/templates.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("scorewatch.telemetry._rows", ["src/scorewatch/telemetry/_rows.c"], optional=True)])
