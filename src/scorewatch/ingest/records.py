"""Queued records: one request's accepted items, in memory and in the write-ahead log.

In memory a :class:`Record` keeps its envelopes compact (one buffer, their lengths) while it waits for
the writer. In the log, :func:`encode` writes a JSON header line mapping the accepted
instrumentation keys to their applications, then either the track body as received (replay parses it
again with that map and accepts exactly the same items) or the envelope lines (OTLP);
:func:`decode` turns a log payload back into a :class:`Record`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from scorewatch.apps import Application
from scorewatch.ingest.track import Accepted, decode_body, parse_track
from scorewatch.store.envelopes import BASE_TYPES

# baseType → its index in BASE_TYPES (Record.codes).
BASE_TYPE_CODES = {base_type: i for i, base_type in enumerate(BASE_TYPES)}


@dataclass
class Record:
    """One request's accepted items, as the writer needs them, kept compact while they wait:
    the envelopes' JSON concatenated in one buffer with their lengths, not one object per item."""

    seq: int
    count: int
    reserved: int  # bytes of the queue budget this record holds until it is written
    blob: bytes
    offsets: np.ndarray  # int64, count + 1: envelope i is blob[offsets[i]:offsets[i + 1]] (Arrow's layout)
    base_types: list[str]
    app_ids: list[str]
    app_names: list[str]
    ikeys: list[str]
    codes: np.ndarray  # int8 per item: the index of its baseType in BASE_TYPES (the writer groups by it)
    single_app: bool  # every item belongs to the same application (the rule for one request)

    @classmethod
    def of(cls, seq: int, lines: list[Any], base_types: list[str], apps: list[Application],
           reserved: int = 0) -> Record:
        n = len(lines)
        single = all(a is apps[0] for a in apps)
        if apps and single:  # one application per request is the rule
            app = apps[0]
            ids, names, ikeys = [app.app_id] * n, [app.name] * n, [app.instrumentation_key] * n
        else:
            ids = [a.app_id for a in apps]
            names = [a.name for a in apps]
            ikeys = [a.instrumentation_key for a in apps]
            single = len(set(zip(ids, names, ikeys, strict=True))) <= 1
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=n), out=offsets[1:])
        codes = np.fromiter(map(BASE_TYPE_CODES.__getitem__, base_types), dtype=np.int8, count=n)
        return cls(seq, n, reserved, b"".join(lines), offsets, base_types, ids, names, ikeys, codes, single)

    def slice(self, start: int, stop: int) -> Record:
        """Items ``start`` to ``stop`` of this record (same sequence; the buffer is shared)."""
        return Record(self.seq, stop - start, 0, self.blob, self.offsets[start:stop + 1],
                      self.base_types[start:stop], self.app_ids[start:stop], self.app_names[start:stop],
                      self.ikeys[start:stop], self.codes[start:stop], self.single_app)

    def lines(self) -> list[bytes]:
        """Each envelope's JSON text (for replay checks and tests)."""
        bounds = self.offsets.tolist()
        return [self.blob[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]


def encode(accepted: Accepted) -> bytes:
    """A WAL payload: a JSON header line, then the track body as received or the envelope lines.

    The header maps the instrumentation keys of the accepted items to their applications. Replaying
    a track body with exactly that map accepts exactly the same items (the checks are deterministic).
    """
    # Distinct application objects first (by identity: a request's items share one), then by key.
    distinct = {id(a): a for a in accepted.apps}.values()
    apps = {a.instrumentation_key: [a.app_id, a.name] for a in distinct}
    if accepted.body is not None:
        header = {"apps": apps, "track": accepted.encoding or ""}
        return orjson.dumps(header) + b"\n" + accepted.body
    return orjson.dumps({"apps": apps}) + b"\n" + b"\n".join(accepted.lines)


def decode(seq: int, payload: bytes) -> Record:
    """The :class:`Record` a WAL payload stands for (used on replay)."""
    head, _, body = payload.partition(b"\n")
    header = orjson.loads(head)
    known = {ikey: Application(name, app_id, ikey, 0) for ikey, (app_id, name) in header["apps"].items()}
    if "track" in header:
        data = decode_body(body, header["track"], max_bytes=1 << 62)
        accepted = parse_track(data, lambda ikey: known.get(ikey) if ikey else None)
        return Record.of(seq, accepted.lines, accepted.base_types, accepted.apps)
    lines, base_types, apps = [], [], []
    for line in body.split(b"\n") if body else []:
        item = orjson.loads(line)
        lines.append(line)
        base_types.append(item["data"]["baseType"])
        apps.append(known[item["iKey"]])
    return Record.of(seq, lines, base_types, apps)
