"""Services outlive the hub: SIGKILL the hub, they keep answering; the next hub adopts them (same pid),
stores what they printed meanwhile exactly once, and can still roll them without a failed request."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.deploy.conftest import deploy, make_app, register, running_hub
from tests.helpers import Load

pytestmark = pytest.mark.slow


def test_a_killed_hub_leaves_its_services_serving_and_the_next_one_adopts_them(tmp_path: Path) -> None:
    folder = tmp_path / "app"
    _, model_file = make_app(folder)
    with running_hub(tmp_path / "ws", tmp_path) as hub:
        record = register(hub, model_file)
        deploy(hub, "kept", folder, models=[{"name": record["name"], "version": record["version"]}], replicas=2)
        view = hub.healthy("kept")
        pid, url = view["status"]["pid"], view["scoring_uri"]
        hub.kill()  # SIGKILL, its whole process group; the service has a session of its own

        for i in range(5):  # still answering, and printing to a console no hub reads now
            answer = httpx.post(url, json={"echo": f"while-down-{i}"}, timeout=30)
            assert answer.status_code == 200 and answer.json()["echo"] == f"while-down-{i}"

        hub.start()  # the same workspace and port
        view = hub.healthy("kept")
        assert view["status"]["pid"] == pid and view["status"]["launch"] == 1  # adopted, not restarted
        assert f"adopted service kept (pid {pid}, ready)" in hub.output()

        def printed() -> list[str]:
            return [line for line in hub.api.request("GET", "/v1/services/kept/logs")["content"].splitlines()
                    if line.startswith("scoring")]

        hub.wait("kept", lambda v: len(printed()) == 5, timeout=20)
        assert printed() == [f'scoring {{"echo":"while-down-{i}"}}' for i in range(5)]  # each once
        everything = hub.api.request("GET", "/v1/services/kept/logs")["content"]
        assert everything.count("init done with v1") == 2  # two workers, stored before the kill: not again

        with Load(url, body=b'{"echo": "roll"}', clients=4) as load:  # the adopted socket rolls it
            load.wait_for(80)
            hub.api.request("PATCH", "/v1/services/kept", {"replicas": 1})
            view = hub.healthy("kept")
            load.wait_for(80)
        assert load.failures == [], load.failures[:5]
        assert view["status"]["pid"] != pid and view["spec"]["replicas"] == 1
