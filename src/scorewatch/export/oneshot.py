"""One-shot export (``scorewatch export run``): an application's rows of a time range, for a backfill.

A job is named by its arguments (:func:`~scorewatch.export.rules.run_id`), keeps its rule in the
document ``exports/<job id>/rule`` (``<home>/exports/<job id>/rule.json``) and its checkpoints beside
it, and exports what the store held when it first started, in position order, like a continuous
rule: so running the same command after Ctrl-C (or a crash) resumes where it stopped, and nothing is
written twice.

Only one process may open an embedded store (DuckDB, chdb). When no hub runs, the command exports in
its own process; when the hub holds the store, the job is handed to it as a ``once`` rule and the
command follows its progress there (Ctrl-C pauses the job). A shared ClickHouse store is read by the
command itself.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from scorewatch.documents import Documents, documents_for
from scorewatch.errors import BadRequest, ConfigError
from scorewatch.export.exporter import Checkpoint, Exporter, read_checkpoints, state_key, total
from scorewatch.export.rules import Rule, RuleBook, now_iso, run_id
from scorewatch.export.service import status_key
from scorewatch.export.targets import Target
from scorewatch.settings import Settings
from scorewatch.store import backends
from scorewatch.store.base import Store
from scorewatch.workspace import Workspace

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
HUB_PICKUP_S = 15.0  # how long the command waits for a running hub to start the job


def parse_when(text: str, now: datetime) -> datetime:
    """``2026-01-31``, ``2026-01-31T10:00:00Z`` (UTC unless it says otherwise), ``now``, or a time
    that long ago: ``90m``, ``12h``, ``7d``."""
    text = text.strip()
    if text == "now":
        return now
    match = _AGO.match(text)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"cannot read the time {text!r}: use ISO 8601 (2026-01-31T10:00:00Z), 'now' "
                         "or a time ago such as 12h or 7d") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass
class Summary:
    rows: int
    files: int
    bytes: int
    seconds: float
    resumed: bool


def _rule_key(rule_id: str) -> str:
    return f"{state_key(rule_id)}/rule"


def job_rule(documents: Documents, app: str, app_id: str, ikey: str, since: str, until: str, url: str, fmt: str,
             tables: list[str], resource_id: str) -> Rule:
    """The job's rule: the one saved when it first ran, or a new one (times resolved now)."""
    job = run_id(app_id, since, until, url, fmt, tables)
    saved = documents.read(_rule_key(job))
    if isinstance(saved, dict):
        return Rule(**saved)
    now = datetime.now(UTC)
    start, end = parse_when(since, now), parse_when(until, now)
    if end <= start:
        raise BadRequest(f"--until ({end.isoformat()}) must be after --since ({start.isoformat()})")
    return Rule(name=job, id=job, app=app, app_id=app_id, ikey=ikey, url=url, format=fmt, tables=tables,
                kind="once", since=start.isoformat(), until=end.isoformat(), resource_id=resource_id)


def _save_rule(documents: Documents, rule: Rule) -> bool:
    """Keep the job's rule (once); True when it was kept before: the job resumes."""
    if documents.read(_rule_key(rule.id)) is not None:
        return bool(read_checkpoints(documents, rule.id))
    documents.write(_rule_key(rule.id), asdict(rule), public=True)
    return False


@contextmanager
def _progress(total: int, done: int, label: str) -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar (rows, rate, ETA); yields ``update(done, total, note)``."""
    started, first = time.monotonic(), done
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("rows  {task.fields[rate]}"), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=total or None, completed=done, rate="")

        def update(done: int, total: int, note: str) -> None:
            elapsed = time.monotonic() - started
            rate = f"{(done - first) / elapsed:,.0f}/s" if elapsed > 0.5 and done > first else ""
            bar.update(task, completed=done, total=total or None, rate=rate,
                       description=label + (f" ({note})" if note else ""))

        yield update


@contextmanager
def _ctrl_c() -> Iterator[threading.Event]:
    """Ctrl-C sets the event (the round being written finishes first); a second one stops at once."""
    pressed = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if pressed.is_set():
            raise KeyboardInterrupt
        pressed.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def run_here(store: Store, rule: Rule, settings: Settings, documents: Documents) -> Summary:
    """Export the job in this process (every writer's stream in turn), with a progress bar; Ctrl-C
    stops it after the current round (a second Ctrl-C at once); the same command resumes it."""
    target = Target.open(rule.url, settings)
    target.check()
    resumed = _save_rule(documents, rule)
    exporters = [Exporter(store, rule, target, documents, max_items=settings.export_max_items, stream=stream)
                 for stream in sorted(store.row_positions())]
    rows = sum(e.total() for e in exporters)

    def done() -> int:
        return sum(e.checkpoint.items for e in exporters)

    started = time.monotonic()
    with _ctrl_c() as pressed, _progress(rows, done(), f"export {rule.app}") as update:
        for exporter in exporters:
            while not exporter.done and not pressed.is_set():
                exporter.round()
                update(done(), rows, "")
    if not all(e.done for e in exporters):
        raise KeyboardInterrupt
    checkpoint = total({e.stream: e.checkpoint for e in exporters}) or Checkpoint(position=0)
    return _finish(documents, rule, checkpoint, time.monotonic() - started, resumed)


def run_in_hub(rule: Rule, settings: Settings, documents: Documents, home: Path) -> Summary:
    """Hand the job to the running hub and follow it; Ctrl-C pauses it (run again to resume)."""
    Target.open(rule.url, settings).check()
    resumed = _save_rule(documents, rule)
    book = RuleBook(documents)
    if book.find(rule.name) is None:
        book.add(rule)
    else:
        book.update(rule.name, state="active", paused_at="")
    asked, started = time.time(), time.monotonic()
    try:
        with _progress(0, 0, f"export {rule.app} (in the hub)") as update:
            while True:
                status = documents.read(status_key(rule.id), {})
                checkpoint = total(read_checkpoints(documents, rule.id))
                fresh = status.get("updated", "") >= datetime.fromtimestamp(int(asked), UTC).isoformat(timespec="seconds")
                if checkpoint is not None and fresh:
                    update(checkpoint.items, status.get("total", 0), status.get("last_error", ""))
                    if status.get("done"):
                        break
                elif time.time() - asked > HUB_PICKUP_S:
                    raise ConfigError(f"the store is in use but no hub took the export job within {HUB_PICKUP_S:g} s; "
                                      f"is `scorewatch hub` running on {home}? (the job waits in the export rules "
                                      f"as {rule.name!r}: run the command again to follow it)")
                time.sleep(0.5)
    except KeyboardInterrupt:
        book.update(rule.name, state="paused", paused_at=now_iso())
        click.echo(f"paused export {rule.name}; run the same command again to resume it", err=True)
        raise click.Abort() from None
    checkpoint = total(read_checkpoints(documents, rule.id)) or Checkpoint(position=0)
    book.remove(rule.name)
    return _finish(documents, rule, checkpoint, time.monotonic() - started, resumed)


def _finish(documents: Documents, rule: Rule, checkpoint: Checkpoint, seconds: float, resumed: bool) -> Summary:
    documents.delete(state_key(rule.id))
    return Summary(rows=checkpoint.items, files=checkpoint.files, bytes=checkpoint.bytes, seconds=seconds,
                   resumed=resumed)


def run(workspace: Workspace, settings: Settings, rule: Rule) -> Summary:
    """Run the job here when the store is free (or shared), else in the hub that holds it."""
    documents = documents_for(workspace, settings)
    try:
        store = backends.open_store(workspace, settings, reader=True)
    except ConfigError:  # the hub (or another command) holds the store
        return run_in_hub(rule, settings, documents, workspace.home)
    try:
        return run_here(store, rule, settings, documents)
    except KeyboardInterrupt:
        click.echo(f"stopped export {rule.name}; run the same command again to resume it", err=True)
        raise click.Abort() from None
    finally:
        store.close()
