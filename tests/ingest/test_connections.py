"""No one client can stall the hub: idle and slow connections time out, headers have a size cap, and
overload is answered 429 before the connection cap. Raw sockets, as an attacker would use them."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson

from tests.ingest.conftest import RunningHub, running_hub
from tests.ingest.test_hub_process import start_hub, stop_hubs  # noqa: F401 - the fixture stops them
from tests.ingest.test_track import envelope


def _address(hub: RunningHub) -> tuple[str, int]:
    parts = urlsplit(hub.url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


@contextmanager
def _idle_connections(hub: RunningHub, count: int) -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.create_connection(_address(hub), timeout=30)) for _ in range(count)]
        yield sockets


def _answer(sock: socket.socket, timeout: float = 30.0) -> bytes:
    """Everything the hub sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _ingest(hub: RunningHub, message: str) -> httpx.Response:
    return httpx.post(f"{hub.url}/v2.1/track", timeout=30,
                      content=orjson.dumps([envelope(hub.ikey, "MessageData", {"message": message})]))


def test_idle_connections_take_no_slot_and_are_closed(tmp_path: Path) -> None:
    """`scorewatch hub` as users run it: 512 idle connections made every call a 503 while they stayed open."""
    server, url = start_hub(tmp_path / "ws", tmp_path, hub_request_timeout_s="2")
    ikey = orjson.loads((tmp_path / "ws" / "config.json").read_bytes())["default_app"]["instrumentation_key"]
    address = (urlsplit(url).hostname or "", urlsplit(url).port or 0)
    with ExitStack() as stack:
        idle = [stack.enter_context(socket.create_connection(address, timeout=30)) for _ in range(520)]
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
        body = orjson.dumps([envelope(ikey, "MessageData", {"message": "with 520 idle connections open"})])
        response = httpx.post(f"{url}/v2.1/track", content=body, timeout=30)
        assert response.status_code == 200, response.text
        assert _answer(idle[0]) == b""  # closed after the request timeout, without a word
    server.stop()


def test_headers_past_the_cap_are_431_and_slow_ones_408(tmp_path: Path) -> None:
    with running_hub(tmp_path / "ws", hub_request_timeout_s=1.0) as hub:
        with socket.create_connection(_address(hub), timeout=30) as sock:  # never finishes its headers
            sock.sendall(b"POST /v2.1/track HTTP/1.1\r\nHost: x\r\nx-padding: ")
            sent = 0
            try:
                while sent < 64 * 1024 * 1024:
                    sock.sendall(b"a" * 65536)
                    sent += 65536
            except OSError:  # the hub closed the connection while we were sending
                pass
            assert _answer(sock).startswith(b"HTTP/1.1 431 ")
            assert sent < 32 * 1024 * 1024  # refused at the cap (plus socket buffers), not after 64 MiB
        with socket.create_connection(_address(hub), timeout=30) as sock:  # whole, but too large
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"x-a: " + b"b" * 70_000 + b"\r\n\r\n")
            assert b"RequestHeaderFieldsTooLarge" in _answer(sock)
        with socket.create_connection(_address(hub), timeout=30) as sock:  # slowloris
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            assert _answer(sock).startswith(b"HTTP/1.1 408 ")
        assert httpx.get(f"{hub.url}/health", timeout=30).status_code == 200


def test_large_bodies_on_one_connection_are_not_mistaken_for_headers(shared_hub: RunningHub) -> None:
    """A read holds the next request's headers and the start of its body: only headers count."""
    body = orjson.dumps([envelope(shared_hub.ikey, "MessageData", {"message": "x" * 500})] * 400)
    assert len(body) > 3 * 64 * 1024
    with httpx.Client(timeout=30) as client:
        for _ in range(5):
            response = client.post(f"{shared_hub.url}/v2.1/track", content=body)
            assert response.status_code == 200, response.text


def test_a_body_that_stops_or_crawls_is_408(tmp_path: Path) -> None:
    with running_hub(tmp_path / "ws", hub_request_timeout_s=1.0) as hub:
        with socket.create_connection(_address(hub), timeout=30) as sock:
            sock.sendall(b"POST /v2.1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n[{")
            started = time.monotonic()
            while time.monotonic() - started < 30:  # one byte every 0.3 s: never idle, far too slow
                try:
                    sock.sendall(b" ")
                except OSError:
                    break
                time.sleep(0.3)
            answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"slower than" in answer, answer[:200]
        with socket.create_connection(_address(hub), timeout=30) as sock:
            sock.sendall(b"POST /v2.1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n[{")
            assert _answer(sock).startswith(b"HTTP/1.1 408 ")
        assert _ingest(hub, "after").status_code == 200


def test_overload_is_429_before_the_cap_and_503_at_it(tmp_path: Path) -> None:
    with running_hub(tmp_path / "ws", hub_max_connections=50) as hub:
        with _idle_connections(hub, 40):  # 80% of the cap
            response = httpx.get(f"{hub.url}/health", timeout=30)
            assert response.status_code == 429 and response.headers["Retry-After"] == "1"
            with _idle_connections(hub, 10), socket.create_connection(_address(hub), timeout=30) as over:
                assert _answer(over).startswith(b"HTTP/1.1 503 ")
        deadline = time.monotonic() + 30
        while (status := httpx.get(f"{hub.url}/health", timeout=30).status_code) != 200:
            assert time.monotonic() < deadline, status  # the hub has seen the connections go
            time.sleep(0.05)
