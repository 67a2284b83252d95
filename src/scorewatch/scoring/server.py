"""Running the scoring service: resolving what to serve, then uvicorn with one or N workers.

One worker runs in this process. N workers share one listening socket bound here and are separate
processes started by uvicorn's supervisor; each imports :func:`~scorewatch.scoring.app.
create_app_from_env` and builds its own app (and runs its own ``init()``). A worker whose ``init()``
fails exits with uvicorn's startup-failure code, which makes the supervisor stop instead of respawning,
and :func:`run` then raises, so ``scorewatch serve`` exits non-zero within seconds.
"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from scorewatch.errors import ConfigError
from scorewatch.ports import listen
from scorewatch.scoring import lifecycle
from scorewatch.scoring.app import FAILURE_FILE_VAR, configure_logging, create_app
from scorewatch.scoring.auth import Keys, resolve_keys
from scorewatch.scoring.config import ENV_VAR, ServeConfig
from scorewatch.settings import Settings


def resolve(entry_script: str | None, model_dir: str | None, settings: Settings,
            environ: Mapping[str, str] | None = None) -> tuple[ServeConfig, Keys | None]:
    """The configuration to serve: paths made absolute and checked, keys resolved when ``--auth``.

    ``entry_script`` and ``model_dir`` fall back to ``AZUREML_ENTRY_SCRIPT`` (relative to
    ``AML_APP_ROOT`` when that is set) and ``AZUREML_MODEL_DIR``, as in an Azure container.
    """
    environ = os.environ if environ is None else environ
    app_root = Path(environ["AML_APP_ROOT"]).resolve() if environ.get("AML_APP_ROOT") else None
    script_name = entry_script or environ.get("AZUREML_ENTRY_SCRIPT")
    if not script_name:
        raise ConfigError("no entry script: pass ENTRY_SCRIPT or set AZUREML_ENTRY_SCRIPT")
    script = Path(script_name)
    if not script.is_absolute() and app_root is not None and not script.exists():
        script = app_root / script
    script = script.resolve()
    if not script.is_file():
        raise ConfigError(f"entry script {script_name} not found")
    model_name = model_dir or environ.get("AZUREML_MODEL_DIR")
    models = Path(model_name).resolve() if model_name else None
    if models is not None and not models.exists():
        raise ConfigError(f"model directory {model_name} not found")
    if settings.workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {settings.workers}")
    if settings.scoring_concurrency < 1:
        raise ConfigError(f"scoring_concurrency must be at least 1, not {settings.scoring_concurrency}")
    if settings.scoring_queue_limit < 1:
        raise ConfigError(f"scoring_queue_limit must be at least 1, not {settings.scoring_queue_limit}")
    if settings.scoring_timeout_ms <= 0:
        raise ConfigError(f"SCORING_TIMEOUT_MS must be positive, not {settings.scoring_timeout_ms}")
    settings = settings.replace(home=settings.home.resolve())
    config = ServeConfig(entry_script=script, model_dir=models, settings=settings, app_root=app_root)
    keys = None
    if settings.auth:
        keys_file = Path(settings.auth_keys_file) if settings.auth_keys_file else (
            settings.home / "services" / f"{config.service_name}.keys.json")
        keys = resolve_keys(settings.auth_primary_key, settings.auth_secondary_key, keys_file.resolve())
        config.key_digests = keys.digests()
    return config, keys


def _uvicorn_options(settings: Settings) -> dict[str, object]:
    # A bounded graceful shutdown: a request that never ends must not keep a stopping service alive.
    return {"host": settings.host, "port": settings.port, "lifespan": "on", "access_log": False,
            "server_header": False, "log_level": "info", "http": lifecycle.DrainingProtocol,
            "timeout_graceful_shutdown": max(1, round(settings.graceful_timeout_s))}


def run(config: ServeConfig, fd: int | None = None) -> None:
    """Serve until SIGTERM/SIGINT (in-flight requests finish first, see :mod:`~scorewatch.scoring.lifecycle`).
    Raises ConfigError when a worker could not start.

    ``fd``: serve on this inherited listening socket instead of binding ``host:port`` (a supervisor
    hands the same socket from one process of a service to the next).
    """
    configure_logging()
    os.environ[ENV_VAR] = config.to_json()
    settings = config.settings
    # A busy port stops us here, before init() or the telemetry exporter have started.
    try:
        sock = lifecycle.inherited(fd) if fd is not None else listen(settings.host, settings.port)
    except OSError as exc:
        raise ConfigError(f"cannot serve on file descriptor {fd}: {exc}") from None
    handoff = os.environ.pop(lifecycle.HANDOFF_VAR, "")
    if handoff:
        lifecycle.offer(sock, handoff)
    if settings.workers == 1:
        _run_single(config, sock)
        return
    uv_config = uvicorn.Config("scorewatch.scoring.app:create_app_from_env", factory=True,
                               workers=settings.workers, **_uvicorn_options(settings))  # type: ignore[arg-type]
    handle, failure_file = tempfile.mkstemp(prefix="scorewatch-serve-", suffix=".failure")
    os.close(handle)
    os.environ[FAILURE_FILE_VAR] = failure_file
    try:
        supervisor = Multiprocess(uv_config, sockets=[sock])
        supervisor.run()
        sock.close()
        reasons = Path(failure_file).read_text().splitlines()
    finally:
        os.unlink(failure_file)
    if reasons or any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise ConfigError(reasons[0] if reasons else "a worker failed to start (the reason is printed above)")


def _run_single(config: ServeConfig, sock: socket.socket) -> None:
    failures: list[str] = []
    server: uvicorn.Server | None = None

    def on_init_failure(reason: str) -> None:
        failures.append(reason)
        if server is not None:
            server.should_exit = True

    config.prepare_process()
    app = create_app(config, on_init_failure=on_init_failure)
    server = uvicorn.Server(uvicorn.Config(app, **_uvicorn_options(config.settings)))  # type: ignore[arg-type]
    # uvicorn re-raises the stop signal once it has shut down gracefully; with these no-op handlers in
    # place that ends the process normally (exit 0) instead of by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if failures:
        raise ConfigError(failures[0])
