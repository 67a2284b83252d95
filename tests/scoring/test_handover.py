"""One listening socket handed from one `scorewatch serve` process to the next: each worker says when it
is ready, the old process drains, and no request fails (scoring/lifecycle.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scorewatch.ports import listen
from scorewatch.scoring import lifecycle
from tests.helpers import Load, free_port

SCORE_PY = "import os\n\n\ndef init():\n    print('init', os.getpid())\n\n\ndef run(raw):\n    return {'pid': os.getpid()}\n"


class Serving:
    """`scorewatch serve` processes started as a supervisor starts them (own session, ready dir)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.script = tmp_path / "svc" / "score.py"
        self.script.parent.mkdir()
        self.script.write_text(SCORE_PY)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.sockets: list[socket.socket] = []

    def start(self, port: int, *, sock: socket.socket | None = None, workers: int = 1,
              env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        ready = self.tmp_path / f"ready-{len(self.procs)}"
        ready.mkdir()
        args = [sys.executable, "-m", "scorewatch", "serve", str(self.script), "--port", str(port),
                "--workers", str(workers), "--home", str(self.tmp_path / "ws")]
        if sock is not None:
            args += ["--fd", str(sock.fileno())]
        log = open(self.tmp_path / f"serve-{len(self.procs)}.log", "wb")  # noqa: SIM115 - the child holds it
        proc = subprocess.Popen(args, pass_fds=[sock.fileno()] if sock is not None else [], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, lifecycle.READY_DIR_VAR: str(ready), **(env or {})})
        log.close()
        self.procs.append(proc)
        return proc, ready

    def wait_ready(self, proc: subprocess.Popen[bytes], ready: Path, workers: int = 1) -> set[int]:
        deadline = time.monotonic() + 60
        while len(pids := lifecycle.ready_workers(ready)) < workers:
            assert proc.poll() is None, self.output(proc)
            assert time.monotonic() < deadline, self.output(proc)
            time.sleep(0.02)
        return pids

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.tmp_path / f"serve-{self.procs.index(proc)}.log").read_text(errors="replace")

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Serving]:
    s = Serving(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.mark.slow
def test_rolling_to_a_new_process_on_the_same_socket_fails_no_request(serving: Serving) -> None:
    port = free_port()
    sock = listen("127.0.0.1", port)
    sock.listen(1024)
    serving.sockets.append(sock)
    old, ready = serving.start(port, sock=sock, workers=2)
    generations = [serving.wait_ready(old, ready, 2)]
    with Load(f"http://127.0.0.1:{port}/score", clients=6) as load:
        for _ in range(2):
            load.wait_for(150)
            new, ready = serving.start(port, sock=sock, workers=2)
            generations.append(serving.wait_ready(new, ready, 2))
            old.send_signal(signal.SIGTERM)
            assert old.wait(60) == 0, serving.output(old)
            old = new
        load.wait_for(150)
    assert load.failures == []
    answered = {answer["pid"] for answer in load.answers}
    assert answered & generations[-1] and not answered - set().union(*generations)


def test_a_draining_process_answers_a_request_on_a_kept_alive_connection_with_connection_close(
        serving: Serving) -> None:
    port = free_port()
    proc, ready = serving.start(port)
    serving.wait_ready(proc, ready)
    request = (f"POST /score HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               "Content-Length: 2\r\n\r\n{}").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        first = _response(conn)
        assert first.startswith(b"HTTP/1.1 200") and b"connection: close" not in first.lower()
        proc.send_signal(signal.SIGTERM)  # stop: the idle connection stays open for its keep-alive time
        deadline = time.monotonic() + 30
        while "Shutting down" not in serving.output(proc):
            assert time.monotonic() < deadline, serving.output(proc)
            time.sleep(0.01)
        conn.sendall(request)
        second = _response(conn)
        assert conn.recv(1) == b""  # then closed
    assert second.startswith(b"HTTP/1.1 200") and b"connection: close" in second.lower()
    assert proc.wait(30) == 0
    with pytest.raises(httpx.ConnectError):  # it no longer accepts
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def _response(conn: socket.socket) -> bytes:
    """One whole HTTP response (headers, then the body its content-length announces)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")))
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_supervisor_that_did_not_start_a_service_gets_its_listening_socket_from_it(serving: Serving) -> None:
    port, name = free_port(), f"scorewatch-test-{uuid.uuid4().hex}"
    first, ready = serving.start(port, env={lifecycle.HANDOFF_VAR: name})  # binds its own socket
    serving.wait_ready(first, ready)
    sock = lifecycle.fetch(name)
    serving.sockets.append(sock)
    assert sock.getsockname() == ("127.0.0.1", port)
    second, ready = serving.start(port, sock=sock)
    [second_pid] = serving.wait_ready(second, ready)
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    assert httpx.post(f"http://127.0.0.1:{port}/score", content=b"{}").json() == {"pid": second_pid}
    with pytest.raises(OSError):
        lifecycle.fetch(f"scorewatch-test-{uuid.uuid4().hex}")  # nobody offers that one


def test_serving_on_a_descriptor_that_is_not_a_listening_socket_is_a_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "score.py"
    script.write_text(SCORE_PY)
    with open(script, "rb") as not_a_socket:
        fd = not_a_socket.fileno()
        proc = subprocess.run([sys.executable, "-m", "scorewatch", "serve", str(script), "--fd", str(fd),
                               "--home", str(tmp_path / "ws")], pass_fds=[fd], capture_output=True, text=True,
                              timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: cannot serve on file descriptor {fd}: " in proc.stderr

