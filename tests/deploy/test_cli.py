"""The CLI twins of the SDK, run as a user runs them, against a real hub (deploy/cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.deploy.conftest import Hub, make_app

pytestmark = pytest.mark.slow


def scorewatch(hub: Hub, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scorewatch", *args, "--home", str(hub.home)], capture_output=True,
                          text=True, timeout=180)


def test_deploy_update_logs_keys_and_delete_from_the_command_line(hub: Hub, module_tmp: Path) -> None:
    folder = module_tmp / "cli-app"
    _, model_file = make_app(folder)
    registered = scorewatch(hub, "model", "register", str(model_file), "--tag", "stage=test")
    assert registered.returncode == 0 and registered.stdout.startswith("registered model.txt version 1 ("), registered.stderr
    listed = json.loads(scorewatch(hub, "model", "list", "--json").stdout)
    assert [(m["name"], m["version"], m["tags"]) for m in listed] == [("model.txt", 1, {"stage": "test"})]

    deployed = scorewatch(hub, "deploy", "cli-svc", "--entry-script", "score.py", "--source-dir", str(folder),
                          "--model", "model.txt:1", "--app-insights", "--workers", "2")
    assert deployed.returncode == 0, deployed.stderr
    url = deployed.stdout.strip().splitlines()[-1].split(": ", 1)[1]
    assert deployed.stdout.strip().endswith(f"cli-svc is Healthy: {url}") and url.endswith("/score")
    assert httpx.post(url, json={"echo": "from the cli"}).json()["echo"] == "from the cli"

    services = scorewatch(hub, "services").stdout
    assert services.startswith(f"cli-svc\tHealthy\t{url}\tapp insights on\t2 worker(s)\tpid ")
    show = scorewatch(hub, "service", "show", "cli-svc").stdout
    assert "state:         Healthy" in show and "models:        model.txt:1" in show

    switched = scorewatch(hub, "service", "update", "cli-svc", "--app-insights", "off")
    assert switched.returncode == 0 and "telemetry revision" in switched.stdout
    assert json.loads(scorewatch(hub, "service", "show", "cli-svc", "--json").stdout)["spec"]["enable_app_insights"] is False
    nothing = scorewatch(hub, "service", "update", "cli-svc")
    assert nothing.returncode == 2 and nothing.stderr.strip() == "error: No parameters provided to update."

    deadline = time.monotonic() + 20
    while "from the cli" not in (logs := scorewatch(hub, "service", "logs", "cli-svc").stdout):
        assert time.monotonic() < deadline, logs
        time.sleep(0.2)
    assert "init done with v1" in scorewatch(hub, "service", "logs", "cli-svc", "--init").stdout
    assert len(scorewatch(hub, "service", "logs", "cli-svc", "--tail", "3").stdout.splitlines()) == 3

    follow = subprocess.Popen([sys.executable, "-m", "scorewatch", "service", "logs", "cli-svc", "--follow", "--tail", "1",
                               "--home", str(hub.home)], stdout=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline().strip()  # the last line so far; then what comes
        httpx.post(url, json={"echo": "followed"})
        while "followed" not in follow.stdout.readline():
            pass
    finally:
        follow.kill()
        follow.wait()
        if follow.stdout is not None:
            follow.stdout.close()

    no_keys = scorewatch(hub, "service", "keys", "cli-svc")
    assert no_keys.returncode == 2 and "key authentication is not enabled for service cli-svc" in no_keys.stderr
    assert scorewatch(hub, "service", "update", "cli-svc", "--auth", "on").returncode == 0
    keys = json.loads(scorewatch(hub, "service", "keys", "cli-svc", "--json").stdout)
    assert httpx.post(url, json={}).status_code == 401
    assert httpx.post(url, json={}, headers={"Authorization": f"Bearer {keys['primaryKey']}"}).status_code == 200
    regen = scorewatch(hub, "service", "regen-key", "cli-svc", "--key", "secondary")
    assert regen.returncode == 0 and "new Secondary key" in regen.stdout
    assert json.loads(scorewatch(hub, "service", "keys", "cli-svc", "--json").stdout)["secondaryKey"] != keys["secondaryKey"]

    assert scorewatch(hub, "service", "delete", "cli-svc").stdout.strip() == "cli-svc: deleted"
    assert scorewatch(hub, "services").stdout == ""
    gone = scorewatch(hub, "service", "show", "cli-svc")
    assert gone.returncode == 4 and gone.stderr.strip() == (
        "error: WebserviceNotFound: Webservice with name cli-svc not found in provided workspace")


def test_command_line_errors_name_what_is_wrong(hub: Hub, module_tmp: Path) -> None:
    missing = scorewatch(hub, "deploy", "no-script", "--entry-script", str(module_tmp / "nothing.py"))
    assert missing.returncode == 2 and "entry_script" in missing.stderr and "is not a file" in missing.stderr
    bad_name = scorewatch(hub, "deploy", "Bad_Name", "--entry-script", str(module_tmp / "nothing.py"))
    assert bad_name.returncode == 2 and "invalid service name 'Bad_Name'" in bad_name.stderr
    no_hub = subprocess.run([sys.executable, "-m", "scorewatch", "services", "--home", str(module_tmp / "empty")],
                            capture_output=True, text=True, timeout=60)
    assert no_hub.returncode != 0 and "Traceback" not in no_hub.stderr and "no scorewatch workspace" in no_hub.stderr
