"""`scorewatch up`: hub + monitored scoring service for the example, wired together, stopped cleanly."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.helpers import ServerProcess, free_port, wait_for_http

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_up_serves_the_example_and_its_telemetry_reaches_the_hub(tmp_path: Path) -> None:
    home, hub_port, port = tmp_path / "ws", free_port(), free_port()
    up = ServerProcess(["up", str(ROOT / "examples" / "sklearn-ridge"), "--home", str(home),
                        "--hub-port", str(hub_port), "--port", str(port)], log_dir=tmp_path).start()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", proc=up.proc, expect_status=200, timeout=180)
        sample = {"data": [[0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.020, -0.018]]}
        response = httpx.post(f"http://127.0.0.1:{port}/score", json=sample, timeout=30)
        assert response.status_code == 200 and isinstance(response.json()[0], float)

        default = orjson.loads((home / "config.json").read_bytes())["default_app"]
        query = f"http://127.0.0.1:{hub_port}/v1/apps/{default['app_id']}/query"
        rows: list = []
        for _ in range(300):  # the service's exporter sends about once a second
            result = httpx.get(query, params={"query": "requests | where url endswith '/score' | count"},
                               headers={"x-api-key": default["api_key"]})
            assert result.status_code == 200, result.text
            rows = result.json()["tables"][0]["rows"]
            if rows and rows[0][0] >= 1:
                break
            time.sleep(0.1)
        assert rows and rows[0][0] >= 1, up.output()
        for line in ("scoring URL", "curl -X POST", default["connection_string"], "requests | take 10"):
            assert line in up.output()
    finally:
        code = up.stop(timeout=60)
    assert code == 0, up.output()
    assert "stopped" in up.output()
    for p in (hub_port, port):  # both children are gone
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{p}/", timeout=2)
