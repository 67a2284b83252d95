"""Content-addressed payload blobs: values too large (or not text) to keep inline in a row.

A blob lives at ``<workspace>/blobs/sha256/<ab>/<cd>/<hexdigest>`` (first two byte pairs of the digest
as folders) and holds the value's bytes exactly. The row keeps a marker instead of the value::

    {"blob": "sha256:<hexdigest>", "path": "sha256/ab/cd/<hexdigest>", "size": 10485760,
     "preview": "<first 256 characters, decoded as UTF-8 with replacement>"}

Inline values are always strings, so an object in their place is always a marker. Writing is
atomic (temporary file, then rename) and idempotent: equal payloads share one file.
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


def inline_or_blob(value: bytes | str | None, limit: int, blobs: BlobStore | None) -> Any:
    """``value`` as a row keeps it: the text when it is UTF-8 and within ``limit`` bytes, else a marker.

    Bytes that are not valid UTF-8 always go to a blob, so nothing is lost to decoding.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        if len(value) <= limit // 4 or len(value.encode("utf-8", "surrogatepass")) <= limit:
            return value
        data = value.encode("utf-8", "surrogatepass")
    else:
        data = value if value.__class__ is bytes else bytes(value)  # no copy of the common case
        if len(data) <= limit:
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                pass
    if blobs is None:
        # No workspace to write to: keep the whole value inline rather than lose any of it.
        return data.decode("utf-8", "replace")
    return blobs.marker(data)
