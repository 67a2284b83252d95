"""ClickHouse's HTTP interface in front of chdb, for the tests of hub replicas sharing one ClickHouse.

No ClickHouse server can run on this machine (its packages come from neither PyPI, Debian nor npm),
but its engine can: chdb. This process serves the part of the HTTP interface clickhouse-connect uses
(a statement in the ``query`` parameter and/or the body, data after ``FORMAT x`` in the body of an
INSERT, settings and ``database`` as parameters, the answer in the asked format, errors as status 500
with ``X-ClickHouse-Exception-Code``) over one chdb engine, so several hub processes reach one store
the way they would reach a server. The SQL, the tables, the views and the deduplication are
ClickHouse's own; only the HTTP layer is this file's.

    python -m tests.clickhouse_http DIR PORT
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import chdb

_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_INSERT_DATA = re.compile(rb"^(\s*INSERT\s+INTO\s+.+?\bFORMAT\s+\w+)[ \t]*\r?\n", re.IGNORECASE | re.DOTALL)
_CODE = re.compile(r"Code:\s*(\d+)")
_NOT_SETTINGS = {"query", "database", "query_id", "session_id", "session_timeout", "session_check",
                 "client_protocol_version", "enable_http_compression", "wait_end_of_query", "compress",
                 "decompress", "send_progress_in_http_headers", "http_headers_progress_interval_ms",
                 "default_format", "buffer_size", "user", "password"}


class Engine:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        chdb.connect(path).close()  # start the engine (and fail here, not at the first request)

    def run(self, database: str, settings: dict[str, str], sql: str, data: bytes | None) -> tuple[bytes, str]:
        """Run one statement; returns the answer and its format."""
        fmt = "TabSeparated"
        infile = None
        if data is not None:  # INSERT ... FORMAT x, then the rows
            match = _FORMAT.search(sql)
            assert match is not None
            fd, infile = tempfile.mkstemp(suffix=".data")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            clause = ""
            if settings:
                clause = " SETTINGS " + ", ".join(f"{k} = {_quote(v)}" for k, v in settings.items())
            sql = f"{sql[:match.start()]} FROM INFILE {_quote(infile)}{clause} FORMAT {match.group(1)}"
            settings = {}
        else:
            match = _FORMAT.search(sql)
            if match:
                fmt, sql = match.group(1), sql[:match.start()]
        conn = chdb.connect(self.path)
        try:
            if database:
                conn.query(f"USE `{database}`", "TabSeparated")
            for key, value in settings.items():
                conn.query(f"SET {key} = {_quote(value)}", "TabSeparated")
            result = conn.query(sql, fmt)
            return (result.bytes() or b""), fmt
        finally:
            conn.close()
            if infile:
                os.unlink(infile)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Handler(BaseHTTPRequestHandler):
    engine: Engine
    protocol_version = "HTTP/1.1"  # keep-alive, as a server answers clickhouse-connect's pool

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._handle(b"")

    def do_POST(self) -> None:  # noqa: N802
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return self._handle(b"".join(chunks))
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(length) if length else b"")

    def _handle(self, body: bytes) -> None:
        url = urlsplit(self.path)
        if url.path == "/ping":
            return self._answer(200, b"Ok.\n", {})
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        settings = {k: v for k, v in params.items() if k not in _NOT_SETTINGS and not k.startswith("param_")}
        query, data = params.get("query", ""), None
        if query and body:
            data = body  # the statement in the URL, the rows in the body
        elif body:
            match = _INSERT_DATA.match(body)
            if match:
                query, data = match.group(1).decode(), body[match.end():]
            else:
                query = body.decode()
        try:
            answer, fmt = self.engine.run(params.get("database", ""), settings, query, data)
        except Exception as exc:  # the engine's message, as a server sends it
            message = str(exc)
            code = _CODE.search(message)
            return self._answer(500, message.encode(), {"X-ClickHouse-Exception-Code": code.group(1) if code else "1000"})
        self._answer(200, answer, {"X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC",
                                   "X-ClickHouse-Summary": json.dumps({"read_rows": "0", "written_rows": "0"})})

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    path, port = sys.argv[1], int(sys.argv[2])
    Handler.engine = Engine(path)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
