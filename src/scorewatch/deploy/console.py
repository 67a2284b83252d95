"""Services' consoles into the store: each line a ``traces`` row, read back by ``get_logs()``.

Every start of a service writes its stdout and stderr (``init()`` output, prints, tracebacks, the
server's own lines) to a file of its own in the workspace (:mod:`scorewatch.deploy.launch`), so
nothing is lost while the hub is down: a service outlives the hub. The hub reads each file from where
it left off and stores every complete line as a trace of the workspace's ``default`` application:

    message             the line (longer ones are cut into 64 KiB pieces)
    severityLevel       1 (Information)
    cloud_RoleName      the service's name
    customDimensions    "Log Source": "console", "Service Name", "Deployment Id", "Start" (the start's
                        number), "Offset" (the line's end, in bytes, in that start's console file)

Where it left off is not kept apart: it is in the store, the largest ``Offset`` of each start, read
once when the hub starts (after its write-ahead log is replayed), so a line is stored exactly once
across hub crashes. A row's ``timestamp`` is when the hub read the line: within a second while the
hub runs; lines written while it was down carry the time it came back (``Offset`` keeps their order).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from scorewatch.deploy.records import Deployment

SOURCE = "console"
MAX_LINE = 64 * 1024       # bytes of one row's message; a longer line is stored in pieces
READ_CHUNK = 4 * 1024 * 1024  # bytes read from one file in one round
ROLE_INSTANCE = socket.gethostname()

# sink(envelopes) makes them durable (returns once written to the hub's log) or raises.
Sink = Callable[[list[bytes]], None]
# query(kql) runs KQL over the default application's tables and returns the rows.
Query = Callable[[str], list[list[Any]]]


def envelope(ikey: str, deployment: Deployment, start: int, end: int, pid: int | None, line: str,
             when: str) -> bytes:
    """One console line as an Application Insights MessageData envelope."""
    properties = {"Log Source": SOURCE, "Service Name": deployment.name, "Deployment Id": deployment.uid,
                  "Start": str(start), "Offset": str(end)}
    if pid is not None:
        properties["Pid"] = str(pid)
    return orjson.dumps({
        "name": "Microsoft.ApplicationInsights.Message", "time": when, "iKey": ikey,
        "tags": {"ai.cloud.role": deployment.name, "ai.cloud.roleInstance": ROLE_INSTANCE},
        "data": {"baseType": "MessageData", "baseData": {"ver": 2, "message": line, "severityLevel": 1,
                                                          "properties": properties}},
    })


class Consoles:
    """Reads console files on, from the offsets the store holds."""

    def __init__(self, sink: Sink, query: Query, ikey: Callable[[], str],
                 settle: Callable[[], None] = lambda: None) -> None:
        # settle(): what the sink took is queryable once it returns (the hub's writer batches a while)
        self.sink, self.query, self.ikey, self.settle = sink, query, ikey, settle
        self._offsets: dict[tuple[str, int], int] = {}  # (deployment id, start) -> bytes stored
        self._known: set[str] = set()                   # deployment ids whose offsets were read

    def offset(self, deployment: Deployment, start: int) -> int:
        if deployment.uid not in self._known:
            rows = self.query(
                f"{_console_rows(deployment)} "
                "| summarize max(tolong(customDimensions['Offset'])) by toint(customDimensions['Start'])")
            for start_number, end in rows:
                if start_number is not None and end is not None:
                    self._offsets[(deployment.uid, int(start_number))] = int(end)
            self._known.add(deployment.uid)
        return self._offsets.get((deployment.uid, start), 0)

    def ship(self, deployment: Deployment, start: int, path: Path, pid: int | None, *, final: bool = False) -> int:
        """Store the complete lines of ``path`` not stored yet (``final``: the process ended, so a last
        line without its newline too); returns how many bytes were stored."""
        done = self.offset(deployment, start)
        try:
            with open(path, "rb") as fh:
                fh.seek(done)
                data = fh.read(READ_CHUNK)
        except FileNotFoundError:
            return 0
        if not final or len(data) == READ_CHUNK:
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) >= READ_CHUNK:  # one line longer than a round's read: store it in pieces
                cut = len(data)
            data = data[:cut]
        if not data:
            return 0
        when = datetime.now(UTC).isoformat()
        ikey = self.ikey()
        envelopes: list[bytes] = []
        position = done
        for raw in data.splitlines(keepends=True):
            position += len(raw)
            text = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
            pieces = [text[i:i + MAX_LINE] for i in range(0, len(text), MAX_LINE)] or [""]
            envelopes.extend(envelope(ikey, deployment, start, position, pid, piece, when) for piece in pieces)
        self.sink(envelopes)
        self._offsets[(deployment.uid, start)] = position
        return position - done

    def shipped(self, deployment: Deployment, start: int, path: Path) -> bool:
        """Whether every byte of ``path`` is in the store."""
        try:
            return self.offset(deployment, start) >= os.path.getsize(path)
        except FileNotFoundError:
            return True

    def forget(self, deployment: Deployment) -> None:
        self._known.discard(deployment.uid)
        for key in [k for k in self._offsets if k[0] == deployment.uid]:
            del self._offsets[key]

    def lines(self, deployment: Deployment, num_lines: int, *, init_start: int | None = None,
              init_offset: int | None = None, after: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """The last ``num_lines`` console lines of ``deployment``, oldest first, each ``{"timestamp",
        "start", "offset", "message"}``. ``init_start``: that start's lines only, up to ``init_offset``
        (its readiness); ``after``: only lines after that ``(start, offset)`` (following a console)."""
        where = []
        if init_start is not None:
            where.append(f"start == {int(init_start)}")
            if init_offset is not None:
                where.append(f"offset <= {int(init_offset)}")
        if after is not None:
            where.append(f"(start > {int(after[0])} or (start == {int(after[0])} and offset > {int(after[1])}))")
        rows = self.query(
            f"{_console_rows(deployment)} "
            "| extend start = toint(customDimensions['Start']), offset = tolong(customDimensions['Offset']) "
            + "".join(f"| where {condition} " for condition in where)
            + f"| order by timestamp desc, start desc, offset desc | take {max(0, int(num_lines))} "
            "| project timestamp, start, offset, message")
        return [{"timestamp": str(row[0]), "start": row[1], "offset": row[2], "message": row[3]}
                for row in reversed(rows)]


def _console_rows(deployment: Deployment) -> str:
    """KQL of the deployment's console rows: the cheap column filters first (its role, and no row from
    before it was created, which lets the store skip older row groups), then the JSON properties."""
    created = ""
    if deployment.status.created_time:
        since = datetime.fromisoformat(deployment.status.created_time).astimezone(UTC) - timedelta(minutes=1)
        created = f"| where timestamp >= datetime({since:%Y-%m-%d %H:%M:%S}) "
    return (f"traces {created}| where cloud_RoleName == '{_literal(deployment.name)}' "
            "| where tostring(customDimensions['Log Source']) == 'console' and "
            f"tostring(customDimensions['Deployment Id']) == '{_literal(deployment.uid)}'")


def _literal(value: str) -> str:
    """``value`` inside a single-quoted KQL string (ids are hex, names are checked; this is a net)."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
