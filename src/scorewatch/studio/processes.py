"""The processes of the workspace's scoring services, and what they use (CPU, memory).

:func:`service_processes` is the one place that says which processes serve which service. Today it
reads what monitored workers leave in ``<home>/services/``: each worker names itself in its exporter
counters file, ``<service>-<port>.<worker pid>.exporter.json``, while it runs. Supervised
deployments (with their own records of pids) can take its place without changing its callers.

:class:`ProcessSampler` measures each worker with its exporter process (its children) by pid, with
psutil, keeping the ``psutil.Process`` objects between samples as CPU percentages need.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from scorewatch.deploy.launch import same_process
from scorewatch.deploy.records import Deployment
from scorewatch.workspace import Workspace

_EXPORTER_SUFFIX = ".exporter.json"


@dataclass(frozen=True)
class ServiceProcess:
    service: str  # the service as the workspace names it: <service>-<port>
    pid: int
    app_id: str | None = None  # the application it reports to (None: not known)


def service_processes(workspace: Workspace,
                      deployments: Iterable[tuple[Deployment, str | None]] = ()) -> list[ServiceProcess]:
    """The running processes of the workspace's services: those of ``deployments`` (each with the id
    of the application it reports to) from their records, then the workers of the monitored services
    started by hand."""
    found, supervised = [], set()
    for deployment, app_id in deployments:
        status = deployment.status
        if status.port is None:
            continue
        stem = f"{deployment.name}-{status.port}"
        supervised.add(stem)
        for pid, started in [(status.pid, status.started), *status.others]:
            if pid and same_process(int(pid), started):
                found.append(ServiceProcess(stem, int(pid), app_id))
    return found + [p for p in _from_exporter_files(workspace.services_dir) if p.service not in supervised]


def _from_exporter_files(services_dir: Path) -> list[ServiceProcess]:
    found = []
    for path in sorted(services_dir.glob(f"*{_EXPORTER_SUFFIX}")):
        stem, _, pid = path.name.removesuffix(_EXPORTER_SUFFIX).rpartition(".")
        if stem and pid.isdigit() and psutil.pid_exists(int(pid)):  # a killed worker leaves its file
            found.append(ServiceProcess(stem, int(pid)))
    return found


class ProcessSampler:
    """CPU (percent of one core, since the previous sample) and resident memory of each process and
    its children."""

    def __init__(self) -> None:
        self._known: dict[int, psutil.Process] = {}

    def sample(self, processes: list[ServiceProcess]) -> list[dict[str, Any]]:
        samples, seen = [], set()
        for item in processes:
            cpu = rss = 0.0
            try:
                main = self._process(item.pid)
                family = [main, *main.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in family:
                with contextlib.suppress(psutil.Error):
                    proc = self._process(proc.pid)
                    seen.add(proc.pid)
                    with proc.oneshot():
                        cpu += proc.cpu_percent(None)
                        rss += proc.memory_info().rss
            samples.append({"service": item.service, "pid": item.pid, "app_id": item.app_id,
                            "cpu_percent": round(cpu, 1), "memory_mb": round(rss / 2**20, 1)})
        for pid in set(self._known) - seen:
            del self._known[pid]
        return samples

    def _process(self, pid: int) -> psutil.Process:
        proc = self._known.get(pid)
        if proc is None or not proc.is_running():
            proc = self._known[pid] = psutil.Process(pid)
        return proc
