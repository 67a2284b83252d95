"""With monitoring on, the script's logging still reaches the service's console, as it does with
monitoring off and on Azure's server (issue 13), and is recorded once, as a log row."""

from __future__ import annotations

import textwrap
import time

import httpx
import pytest

from tests.helpers import ServerProcess, free_port, wait_for_http
from tests.telemetry.receiver import Receiver

CONFIGURED = '''
import logging

log = logging.getLogger("score")


def init():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log.info("init info line")


def run(raw):
    log.info("run info line")
    return {"ok": True}
'''

UNCONFIGURED = '''
import logging


def init():
    pass


def run(raw):
    logging.getLogger("score").warning("run warning line")
    logging.getLogger("score").info("an info line nobody asked for")
    return {"ok": True}
'''


def _serve(tmp_path, receiver: Receiver, script: str, *monitoring: str) -> ServerProcess:
    path = tmp_path / "svc" / "score.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(script))
    port = free_port()
    server = ServerProcess(["serve", str(path), "--port", str(port), "--home", str(tmp_path / "ws"), *monitoring],
                           log_dir=tmp_path, env={"SCOREWATCH_EXPORTER_INTERVAL_MS": "100",
                                                  "APPLICATIONINSIGHTS_CONNECTION_STRING": receiver.connection_string})
    server.start()
    server.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    wait_for_http(f"{server.url}/health/ready", expect_status=200, proc=server.proc)  # type: ignore[attr-defined]
    return server


def _console_after_a_request(tmp_path, receiver: Receiver, script: str, *monitoring: str,
                             wait_for: str | None = None) -> str:
    server = _serve(tmp_path, receiver, script, *monitoring)
    try:
        assert httpx.post(f"{server.url}/score", content=b"{}", timeout=30).status_code == 200  # type: ignore[attr-defined]
        if wait_for:
            receiver.wait_for(lambda items: any(i["data"]["baseData"].get("message") == wait_for for i in items))
        deadline = time.monotonic() + 10
        while "line" not in server.output().split("is ready", 1)[-1] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    return server.output()


@pytest.mark.parametrize("monitored", [True, False], ids=["monitored", "not monitored"])
def test_the_scripts_logging_config_works_and_reaches_the_console(tmp_path, receiver, monitored):
    args = () if monitored else ("--no-monitor",)
    console = _console_after_a_request(tmp_path, receiver, CONFIGURED, *args,
                                       wait_for="run info line" if monitored else None)
    assert "INFO score: init info line" in console and "INFO score: run info line" in console
    if monitored:
        messages = [i["data"]["baseData"].get("message") for i in receiver.items]
        assert messages.count("run info line") == 1 and messages.count("init info line") == 1
        # recorded once, as a log row with its level: the console echo is not a second (STDERR) row
        echoes = [i for i in receiver.items if i["data"]["baseData"].get("message") == "STDERR"]
        assert not [e for e in echoes if "info line" in str(e["data"]["baseData"]["properties"])]


def test_an_unconfigured_scripts_warnings_reach_the_console(tmp_path, receiver):
    console = _console_after_a_request(tmp_path, receiver, UNCONFIGURED, wait_for="run warning line")
    assert "run warning line" in console  # logging's last resort, as without monitoring
    assert "an info line nobody asked for" not in console
