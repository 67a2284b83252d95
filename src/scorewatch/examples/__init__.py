"""The examples shipped inside the package, so ``scorewatch up`` runs one from any directory.

Each example is a folder here (``sklearn-ridge``, ...) holding an Azure ML entry script ``score.py``, a
``train.py`` whose ``train(out_dir)`` makes its small model locally (nothing is downloaded), and a
``sample-request.*`` that ``scorewatch up`` prints as a ``curl`` to try. The folders are user code, not
modules of scorewatch: copy one to start your own (``scorewatch examples`` prints where they are).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scorewatch.errors import ConfigError

ROOT = Path(__file__).resolve().parent
DEFAULT = "sklearn-ridge"

# What each example shows; `scorewatch examples` lists them in this order.
ABOUT = {
    "sklearn-ridge": "scikit-learn Ridge regression; score.py as Azure ML's seed documentation writes it",
    "numpy-schema": "inference-schema decorators: typed numpy input, a swagger.json for free",
    "rawhttp": "@rawhttp: the whole request in (CSV, files), an AMLResponse out",
}

# The Content-Type a sample request is sent with, by its file's suffix.
MEDIA_TYPES = {".json": "application/json", ".csv": "text/csv", ".txt": "text/plain"}


@dataclass(frozen=True)
class Example:
    """A folder ``scorewatch up`` can run: shipped (``about`` set) or the user's own."""

    name: str
    path: Path
    about: str = ""

    @property
    def score_py(self) -> Path:
        return self.path / "score.py"

    def sample_request(self) -> tuple[str, str] | None:
        """(media type, body) of the folder's ``sample-request.*``, if it has one."""
        for suffix, media_type in MEDIA_TYPES.items():
            sample = self.path / f"sample-request{suffix}"
            if sample.is_file():
                return media_type, sample.read_text()
        return None


def shipped() -> list[Example]:
    """The examples shipped with scorewatch, in :data:`ABOUT`'s order."""
    return [Example(name, ROOT / name, about) for name, about in ABOUT.items()]


def find(what: str | None) -> Example:
    """The example to run for ``scorewatch up [EXAMPLE]``: a folder of the user's, or a shipped example
    by name (the default one when ``what`` is None). A folder without ``score.py`` is a clear error."""
    if what is None:
        what = DEFAULT
    folder = Path(what).expanduser()
    by_name = {example.name: example for example in shipped()}
    if folder.is_dir():
        example = Example(folder.resolve().name, folder.resolve())
    elif what in by_name:
        example = by_name[what]
    elif folder.name in by_name:  # an old `examples/NAME` path, run from outside a checkout
        raise ConfigError(f"no folder {what}; the examples ship with scorewatch: `scorewatch up {folder.name}`")
    else:
        raise ConfigError(f"no folder and no example named {what!r}; `scorewatch examples` lists the examples "
                          f"({', '.join(by_name)})")
    if not example.score_py.is_file():
        raise ConfigError(f"{example.path} has no score.py: `scorewatch up DIR` serves DIR/score.py, an Azure ML "
                          "entry script with init() and run() (`scorewatch examples` lists examples to copy)")
    return example
