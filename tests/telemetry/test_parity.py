"""Azure parity of what a monitored service records (issue 13): a GET's input is the text run() got,
and ``Client Request Id`` is the caller's id, as Azure's server records both."""

from __future__ import annotations

import httpx

from tests.scoring.conftest import SCRIPTS
from tests.telemetry.receiver import Receiver
from tests.telemetry.test_console import _serve


def test_get_input_and_client_request_ids_as_azure_records_them(tmp_path, receiver: Receiver) -> None:
    server = _serve(tmp_path, receiver, (SCRIPTS / "slow" / "score.py").read_text().replace(
        'json.loads(raw_data).get("sleep", 0)', 'json.loads(raw_data).get("sleep", 0) if raw_data else 0'))
    url = f"{server.url}/score"  # type: ignore[attr-defined]
    try:
        assert httpx.get(url, params={"sleep": "0", "q": "[1,2]"},
                         headers={"x-request-id": "get", "x-ms-client-request-id": "client-1"}).status_code == 200
        assert httpx.post(url, json={"sleep": 0}, headers={"x-request-id": "none"}).status_code == 200
        assert httpx.post(url, json={"sleep": 0}, headers={"x-request-id": "legacy",
                                                           "x-ms-request-id": "old-1"}).status_code == 200
        data = receiver.wait_for(lambda items: len([i for i in items if i["data"]["baseData"].get("message")
                                                    == "model_data_collection"]) == 3)
    finally:
        server.stop()
    model_data = {i["data"]["baseData"]["properties"]["Request Id"]: i["data"]["baseData"]["properties"]
                  for i in data if i["data"]["baseData"].get("message") == "model_data_collection"}
    assert model_data["get"]["Input"] == '{"sleep": 0, "q": [1, 2]}'
    assert model_data["get"]["Client Request Id"] == "client-1"
    assert model_data["none"]["Client Request Id"] == ""  # the caller sent none: empty, as Azure's server
    assert model_data["legacy"]["Client Request Id"] == "old-1"  # the deprecated header still counts
