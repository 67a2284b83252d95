"""Listening sockets: bound before a server starts, so a busy port is one clear line.

uvicorn binds after the app's startup has begun and reports a busy port as a logged ``OSError`` and a
``SystemExit``; binding here first turns it into a :class:`~scorewatch.errors.ConfigError` that names
the address ("cannot listen on 127.0.0.1:5001: address already in use"), before ``init()`` or the
telemetry exporter have started.
"""

from __future__ import annotations

import socket

from scorewatch.errors import ConfigError


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (``SO_REUSEADDR``, inheritable by worker processes)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc))
        raise ConfigError(f"cannot listen on {host}:{port}: {reason[:1].lower()}{reason[1:]}") from None
    sock.set_inheritable(True)
    return sock


def is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be listened on right now."""
    try:
        listen(host, port).close()
    except ConfigError:
        return False
    return True
