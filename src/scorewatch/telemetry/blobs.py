"""Content-addressed payload blobs: values too large (or not text) to keep inline in a row.

A blob lives at ``<workspace>/blobs/sha256/<ab>/<cd>/<hexdigest>`` (first two byte pairs of the digest
as folders) and holds the value's bytes exactly. The row keeps a marker instead of the value::

    {"blob": "sha256:<hexdigest>", "path": "sha256/ab/cd/<hexdigest>", "size": 10485760,
     "preview": "<first 256 characters, decoded as UTF-8 with replacement>"}

Inline values are always strings, so an object in their place is always a marker. Writing is
atomic (temporary file, then rename) and idempotent: equal payloads share one file.

:class:`Payloads` is the one rule that decides inline or blob, wherever a value is recorded (the
worker moves large request payloads to blobs before they travel; the exporter process decides for
the rest; ``_rows.c`` takes only values the rule keeps inline, and leaves the others to it).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

PREVIEW_CHARS = 256


class BlobStore:
    """Blobs under one directory (``Workspace.blobs_dir``)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path_for(self, digest: str) -> Path:
        return self.directory / self.relative_path(digest)

    @staticmethod
    def relative_path(digest: str) -> str:
        return f"sha256/{digest[:2]}/{digest[2:4]}/{digest}"

    def put(self, data: bytes) -> str:
        """Store ``data`` (if not already there); returns its sha256 hex digest."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path_for(digest)
        if path.exists():
            return digest
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{digest}.{os.getpid()}.tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return digest

    def get(self, ref: str) -> bytes:
        """The bytes of a blob by ``sha256:<digest>``, bare digest, or marker dict."""
        return self.path_for(_digest_of(ref)).read_bytes()

    def marker(self, data: bytes) -> dict[str, Any]:
        """Store ``data`` and return the marker a row keeps in its place."""
        digest = self.put(data)
        return {"blob": f"sha256:{digest}", "path": self.relative_path(digest), "size": len(data),
                "preview": data[:PREVIEW_CHARS * 4].decode("utf-8", "replace")[:PREVIEW_CHARS]}


def _digest_of(ref: Any) -> str:
    if isinstance(ref, dict):
        ref = ref["blob"]
    digest = str(ref).removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a sha256 blob reference: {str(ref)[:80]!r}")
    return digest


class Payloads:
    """Inline or blob: a value stays inline when it is UTF-8 text of at most ``limit`` bytes;
    anything larger, and bytes that are not UTF-8, go whole to a blob (so nothing is lost to
    decoding), and the row keeps the blob's marker."""

    def __init__(self, limit: int, blobs: BlobStore | None) -> None:
        self.limit = limit
        self.blobs = blobs
        # A text of this many characters or fewer is inline whatever its characters (4 bytes each at most).
        self.inline_chars = limit // 4

    def fits(self, size: int) -> bool:
        """Whether ``size`` bytes of payload can stay inline (values larger cannot)."""
        return size <= self.limit

    def value(self, value: bytes | bytearray | memoryview | str | dict[str, Any] | None) -> Any:
        """``value`` as a row keeps it: the text, or a blob marker (a marker is kept as it is; None is "")."""
        if value is None:
            return ""
        if isinstance(value, dict):  # already a marker
            return value
        if isinstance(value, str):
            if len(value) <= self.inline_chars:
                return value
            data = value.encode("utf-8", "surrogatepass")
            if self.fits(len(data)):
                return value
        else:
            data = bytes(value)
            if self.fits(len(data)):
                try:
                    return data.decode("utf-8")
                except UnicodeDecodeError:
                    pass
        if self.blobs is None:
            # No workspace to write to: keep the whole value inline rather than lose any of it.
            return data.decode("utf-8", "replace")
        return self.blobs.marker(data)
