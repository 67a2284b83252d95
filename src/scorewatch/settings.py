"""All of scorewatch's settings, in one typed place.

Each field has help text and is read from the environment as ``SCOREWATCH_<FIELD NAME IN CAPS>``;
some also accept the name Azure Machine Learning uses (``aliases``), so an Azure deployment's
environment works unchanged. Command-line options override the environment. ``docs/settings.md``
lists every field; ``tests/test_settings.py`` fails when one is missing there.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from scorewatch.errors import ConfigError
from scorewatch.workspace import discover

ENV_PREFIX = "SCOREWATCH_"


def setting(default: Any, help: str, *, aliases: tuple[str, ...] = (), secret: bool = False) -> Any:
    """A settings field: its default, its help text and the other environment names it answers to.

    A ``secret`` (a key, a connection string) is left out of the settings' ``repr``, so printing or
    logging the settings never shows it.
    """
    return field(default=default, repr=not secret, metadata={"help": help, "aliases": aliases})


@dataclass(frozen=True)
class Settings:
    # Workspace
    home: Path = setting(Path(".scorewatch"), "Workspace directory: store, spool, blobs, config.json "
                         "(default: the nearest .scorewatch in the current directory or its parents).")

    # Scoring service (`scorewatch serve`)
    host: str = setting("127.0.0.1", "Address the scoring service binds to.")
    port: int = setting(5001, "Port of the scoring service.")
    workers: int = setting(1, "Worker processes of the scoring service.", aliases=("WORKER_COUNT",))
    scoring_timeout_ms: int = setting(
        60_000, "Longest a run() call may take before the request answers 504.",
        aliases=("SCORING_TIMEOUT_MS",))
    max_body_size: int = setting(100 * 1024 * 1024, "Largest request body /score accepts, in bytes (413 past it).")
    service_name: str = setting("", "Service name reported in telemetry (default: the entry script's folder).",
                                aliases=("SERVICE_NAME",))
    workspace_name: str = setting("local", "Workspace name reported in telemetry.", aliases=("WORKSPACE_NAME",))
    scoring_concurrency: int = setting(
        1, "run() calls one worker executes at the same time (1 as Azure; raise only for thread-safe scripts).")
    scoring_queue_limit: int = setting(
        1000, "/score calls one worker holds waiting for a free run() thread; past it the answer is 429.")
    graceful_timeout_s: float = setting(
        30.0, "Longest a stopping service waits for requests in flight before it closes their connections.")
    auth: bool = setting(False, "Require 'Authorization: Bearer <key>' on /score (keys printed once at start).")
    auth_primary_key: str = setting("", "Primary key for --auth (empty: read from or generate into auth_keys_file).")
    auth_secondary_key: str = setting("", "Secondary key for --auth (empty: same source as the primary key).")
    auth_keys_file: str = setting(
        "", "JSON file holding the --auth keys (default: <home>/services/<service name>.keys.json, mode 0600).")

    # Telemetry from the scoring service
    connection_string: str = setting(
        "", "Application Insights connection string the service reports to (empty: monitoring off).",
        aliases=("APPLICATIONINSIGHTS_CONNECTION_STRING",))
    app_insights: bool = setting(
        True, "Start with telemetry recording on; off: the service starts with it switched off (given a connection "
        "string, /control/telemetry or Webservice.update(enable_app_insights=True) switches it on).")
    collect_model_data: bool = setting(True, "Record every request's input and output as a model_data_collection trace.")
    sampling_percentage: float = setting(100.0, "Percentage of successful requests kept (failures are always kept).")
    inline_limit: int = setting(64 * 1024, "Largest value stored inline in a row; larger values go to a blob.")
    exporter_queue_size: int = setting(20_000, "Telemetry items the exporter queues before it drops (and counts).")
    exporter_batch_size: int = setting(512, "Telemetry items sent in one request to the ingestion endpoint.")
    exporter_interval_ms: int = setting(1_000, "Longest an item waits in the queue before its batch is sent.")
    spool_max_bytes: int = setting(256 * 1024 * 1024, "Disk the exporter's spool may use while the receiver is down.")
    exporter_queue_max_bytes: int = setting(
        256 * 1024 * 1024, "Memory large payloads (over inline_limit) may hold in the exporter queue before drops.")
    exporter_retry_max_s: float = setting(30.0, "Longest wait between attempts to reach an unreachable receiver.")
    control_key: str = setting("", "Extra key for the telemetry control route (/control/telemetry).")
    exporter_process: bool = setting(
        True, "Build and send telemetry in a helper process per worker, off the worker's GIL.")
    exporter_cpus: str = setting(
        "", "CPUs the exporter processes may run on, as a Linux CPU list ('3', '2-3', '0,2'); empty: any.")
    native: bool = setting(
        True, "Record and build telemetry with the C extensions when they were built (0: the Python paths only).")

    # Hub (`scorewatch hub`)
    hub_host: str = setting("127.0.0.1", "Address the hub binds to.")
    hub_port: int = setting(8400, "Port of the hub.")
    hub_max_connections: int = setting(
        2048, "Connections the hub holds at once; past 80% of it requests are answered 429, at it 503.")
    hub_request_timeout_s: float = setting(
        30.0, "Longest a client may take to send a request's headers, or pause while sending its body (408).")
    ingest_queue_items: int = setting(500_000, "Telemetry items the hub holds before it answers 429.")
    retention_days: int = setting(90, "Default days an application's telemetry is kept.")
    ingest_queue_bytes: int = setting(512 * 1024 * 1024, "Bytes of telemetry (uncompressed JSON) the hub holds before it answers 429.")
    ingest_batch_items: int = setting(200_000, "Most items the hub writes to the store in one transaction.")
    ingest_linger_ms: int = setting(200, "Longest the hub's writer waits to fill a batch before writing it.")
    retention_interval_s: float = setting(3600.0, "Seconds between the hub's retention runs (also run on start).")
    store: str = setting(
        "duckdb", "The hub's store: duckdb (embedded), chdb:///DIR (ClickHouse in-process) or "
        "clickhouse://[USER@]HOST[:PORT]/DATABASE (a ClickHouse server shared by hub replicas; see docs/scaling.md).")
    clickhouse_password: str = setting("", "Password of the ClickHouse user in the store URL; never logged.", secret=True)
    clickhouse_ttl_days: int = setting(
        730, "Days after which ClickHouse drops rows whatever their application's retention (the tables' TTL).")
    store_threads: int = setting(1, "Threads DuckDB uses in the hub (0: one per core). One keeps ingest cheapest on 2 cores.")
    query_timeout_s: float = setting(60.0, "Longest a query may run before it is cancelled.")
    query_max_rows: int = setting(500_000, "Most rows a query returns (the result is flagged as truncated).")
    query_concurrency: int = setting(
        4, "Queries the hub compiles and runs at once, off its event loop; more wait (past 8x this: 429).")

    # Studio (the web UI at /studio on the hub)
    studio_local_no_login: bool = setting(
        False, "Let requests from 127.0.0.1 use the studio without logging in (every application); off: log in.")
    # Deployments (the hub runs them: `scorewatch deploy`, the SDK's Model.deploy)
    service_max_restarts: int = setting(
        3, "Times in a row a deployed service may end before it is Failed (restarted after 0.5, 1, 2, ... s until then).")
    service_restart_backoff_s: float = setting(0.5, "Wait before a deployed service that ended is first restarted (doubling each time).")
    service_start_timeout_s: float = setting(
        600.0, "Longest a deployed service's start (its init()) may take before the start counts as failed.")

    # Continuous export (`scorewatch export ...`; the hub runs the rules)
    export_interval_s: float = setting(5.0, "Seconds an export rule that has caught up waits before it looks for new rows.")
    export_max_items: int = setting(
        100_000, "Most rows one export round reads and writes as one set of files (JSON formats hold ~1 KiB a row meanwhile).")
    export_max_lag_s: float = setting(
        60.0, "Seconds an export may fall behind while it lets ingest write first (its reads wait for gaps between "
        "the store's writes); past it, it reads beside the writes until it has caught up.")
    export_retry_max_s: float = setting(60.0, "Longest wait between attempts to write to a failing export target.")
    export_pause_limit_days: float = setting(
        7.0, "Days a paused export rule holds back retention; past it retention deletes rows the rule has not exported (logged as an error).")
    export_azure_account_name: str = setting("", "Storage account of az:// export targets (or AZURE_STORAGE_ACCOUNT_NAME).")
    export_azure_account_key: str = setting(
        "", "Key of that storage account (or AZURE_STORAGE_ACCOUNT_KEY); never logged.", secret=True)
    export_azure_connection_string: str = setting(
        "", "Connection string of az:// export targets, instead of name and key (or AZURE_STORAGE_CONNECTION_STRING); never logged.",
        secret=True)
    export_s3_endpoint_url: str = setting("", "Endpoint of s3:// export targets (empty: AWS).")
    export_s3_region: str = setting("", "Region of s3:// export targets (or AWS_DEFAULT_REGION).")
    export_s3_access_key_id: str = setting("", "Access key id for s3:// export targets (or AWS_ACCESS_KEY_ID).")
    export_s3_secret_access_key: str = setting(
        "", "Secret access key for s3:// export targets (or AWS_SECRET_ACCESS_KEY); never logged.", secret=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from the environment, then ``overrides`` (ignored where ``None``)."""
        environ = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            for name in (ENV_PREFIX + f.name.upper(), *f.metadata["aliases"]):
                if name in environ and environ[name] != "":
                    values[f.name] = _convert(hints[f.name], environ[name], name)
                    break
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "home" not in values:  # found as git finds its repository (see workspace.discover)
            values["home"] = discover()
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def describe() -> list[tuple[str, str, Any, str]]:
    """(field, environment names, default, help) for every setting, for docs and ``--help``."""
    rows = []
    for f in dataclasses.fields(Settings):
        names = ", ".join((ENV_PREFIX + f.name.upper(), *f.metadata["aliases"]))
        rows.append((f.name, names, f.default, f.metadata["help"]))
    return rows


def _convert(kind: Any, raw: str, name: str) -> Any:
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is Path:
            return Path(raw)
        return kind(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not a valid {kind.__name__}") from None
