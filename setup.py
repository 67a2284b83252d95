"""The one part of the build pyproject.toml cannot declare: the optional C parts of telemetry.

``_worker`` records a request and a print() (in the scoring worker), ``_rows`` fills the common
rows' envelopes (in the exporter process); both take their layouts from ``_protocol.h``, generated
from ``rows.py``. ``optional=True``: without a C compiler the install still succeeds, and scorewatch
runs the Python code they implement (the same rows and bytes, more CPU; see
src/scorewatch/telemetry/native.py, which also refuses an extension built from other sources).
"""

import hashlib
from pathlib import Path

from setuptools import Extension, setup

TELEMETRY = Path("src/scorewatch/telemetry")


def extension(name: str) -> Extension:
    sources = [TELEMETRY / f"{name}.c", TELEMETRY / "_protocol.h"]  # hashed as native.source_hash hashes them
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()
    return Extension(f"scorewatch.telemetry.{name}", [str(sources[0])], depends=[str(sources[1])],
                     define_macros=[("SOURCE_HASH", f'"{digest}"')], optional=True)


setup(ext_modules=[extension("_rows"), extension("_worker")])
