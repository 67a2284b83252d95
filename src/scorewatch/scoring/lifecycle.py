"""How a scoring service hands over to its successor without a failed request.

A supervisor (the hub's deployments) replaces a running ``scorewatch serve`` by starting a new one on
the *same* listening socket, waiting until the new one is ready, then stopping the old one. Three
parts make that lossless:

- **One socket, shared.** The new process gets the listening socket itself (``serve --fd N``), not a
  new socket on the same port: connections waiting in the socket's accept queue are taken by whichever
  process accepts next, so none is reset when the old process stops. (Two sockets with
  ``SO_REUSEPORT`` have two queues, and the connections queued on the one that closes are reset.)
  A supervisor that did not start the running process (a restarted hub) gets the socket from it:
  the process serves it over a Unix socket named in ``SCOREWATCH_SERVE_HANDOFF`` (:func:`offer`,
  :func:`fetch`), to processes of the same user only.
- **Ready, per worker.** Each worker writes a file named after its pid into
  ``SCOREWATCH_SERVE_READY_DIR`` once ``init()`` returned (:func:`mark_ready`), so the supervisor
  knows when *this* process is ready, whatever the shared port answers.
- **Draining instead of closing.** On SIGTERM the old process stops accepting at once (closing its
  copy of the socket leaves the queue to the new process) and lets each open connection finish: a
  request on a kept-alive connection is answered with ``Connection: close``, and an idle connection
  is closed only once it has been idle for the keep-alive timeout, as any server closes idle
  connections (:class:`DrainingProtocol`). Closing idle connections at once, as uvicorn does, loses
  a request a client sends on one at that moment.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from pathlib import Path

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("scorewatch.scoring")

HANDOFF_VAR = "SCOREWATCH_SERVE_HANDOFF"    # the name of the Unix socket this process offers its listener on
READY_DIR_VAR = "SCOREWATCH_SERVE_READY_DIR"  # each worker writes <dir>/<pid> once init() returned


class DrainingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a graceful shutdown that never closes a connection a client
    may be sending on (see the module docstring)."""

    draining = False

    def shutdown(self) -> None:
        self.draining = True
        if self.cycle is None or self.cycle.response_complete:
            if self.timeout_keep_alive_task is None:  # a connection that has not sent a request yet
                self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                    self.timeout_keep_alive_handler)
        else:
            self.cycle.keep_alive = False

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.draining:
            self.cycle.keep_alive = False  # answered with "Connection: close", then closed


# -- readiness ----------------------------------------------------------------------------------------
def mark_ready() -> None:
    """Say that this worker is ready (when started by a supervisor that asked to be told)."""
    directory = os.environ.get(READY_DIR_VAR)
    if directory:
        try:
            Path(directory, str(os.getpid())).touch()
        except OSError:
            log.warning("could not tell the supervisor this worker is ready (%s)", directory, exc_info=True)


def ready_workers(directory: Path) -> set[int]:
    """The pids of the workers that said they are ready in ``directory``."""
    try:
        return {int(p.name) for p in directory.iterdir() if p.name.isdigit()}
    except FileNotFoundError:
        return set()


# -- handing the listening socket over --------------------------------------------------------------
def _address(name: str) -> str:
    return "\0" + name  # Linux's abstract namespace: no path, no file left behind, no path length limit


def offer(listener: socket.socket, name: str) -> threading.Thread:
    """Serve ``listener``'s descriptor to processes of this user that connect to ``name``."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(_address(name))
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                peer, _ = server.accept()
            except OSError:
                return
            with peer:
                try:
                    _pid, uid, _gid = struct.unpack("3i", peer.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                          struct.calcsize("3i")))
                    if uid != os.getuid():  # the abstract namespace has no file permissions: check the caller
                        continue
                    socket.send_fds(peer, [b"L"], [listener.fileno()])
                except OSError:
                    continue

    thread = threading.Thread(target=serve, name="scorewatch-handoff", daemon=True)
    thread.start()
    return thread


def fetch(name: str, timeout: float = 5.0) -> socket.socket:
    """The listening socket the process offering ``name`` serves on (OSError when it offers none)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(_address(name))
        _msg, fds, _flags, _addr = socket.recv_fds(client, 1, 1)
    if not fds:
        raise OSError(f"no listening socket was handed over by {name!r}")
    return socket.socket(fileno=fds[0])


def inherited(fd: int) -> socket.socket:
    """The listening socket this process was started with as descriptor ``fd`` (``serve --fd``)."""
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 1:
        sock.detach()
        raise OSError(f"file descriptor {fd} is not a listening TCP socket")
    sock.set_inheritable(True)
    return sock

