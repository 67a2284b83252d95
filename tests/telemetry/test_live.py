"""Live mode: while the hub holds a service's live lease, its telemetry leaves within a fraction of a
second instead of every ``exporter_interval_ms`` (the studio's live metrics rely on it)."""

from __future__ import annotations

import time

from scorewatch.telemetry.control import (
    Control,
    TelemetryState,
    live_path,
    service_stems,
    state_path,
    write_live_lease,
)
from tests.telemetry.test_service import Service, n_requests


def _wait_for_output(svc: Service, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in svc.server.output():
        assert time.monotonic() < deadline, f"{text!r} not in the service's output:\n{svc.server.output()}"
        time.sleep(0.05)


def test_the_lease_holds_until_its_time_and_garbage_is_no_lease(tmp_path):
    services = tmp_path / "services"
    control = Control(state_path(services, "svc-1"), TelemetryState(), lease_path=live_path(services, "svc-1"),
                      key_digests=["00" * 32])
    assert control.live is False and service_stems(services) == ["svc-1"]
    write_live_lease(live_path(services, "svc-1"), time.time() + 30)
    control.poll(force=True)
    assert control.live is True
    write_live_lease(live_path(services, "svc-1"), time.time() - 1)  # ran out (the hub stopped renewing)
    control.poll(force=True)
    assert control.live is False
    live_path(services, "svc-1").write_text("[1, 2")
    control.poll(force=True)
    assert control.live is False


def test_a_watched_service_sends_within_a_second_and_goes_back_when_unwatched(tmp_path, receiver):
    # A 20 s export interval: without live mode nothing would arrive for 20 s.
    with Service(tmp_path, receiver, SCOREWATCH_EXPORTER_INTERVAL_MS="20000") as svc:
        services = svc.home / "services"
        [stem] = service_stems(services)
        write_live_lease(live_path(services, stem), time.time() + 30)
        _wait_for_output(svc, "live metrics watched")
        assert svc.score({"print": "live"}).status_code == 200
        receiver.wait_for(lambda items: n_requests(items) == 1, timeout=1.5)
        write_live_lease(live_path(services, stem), 0)
        _wait_for_output(svc, "live metrics unwatched")
