"""End to end: `scorewatch serve` with monitoring on, reporting to a real local receiver."""

from __future__ import annotations

import hashlib
import re
import textwrap
import time

import httpx
import orjson
import pytest

from scorewatch.telemetry.blobs import BlobStore
from tests.helpers import ServerProcess, free_port, wait_for_http
from tests.telemetry.receiver import Receiver

SCORE_PY = '''
import json
import logging
import urllib.request

import pandas as pd
from azureml.ai.monitoring import Collector
from azureml.monitoring import ModelDataCollector

log = logging.getLogger("score")


def init():
    global inputs_dc, inputs_collector
    inputs_dc = ModelDataCollector("ridge", identifier="inputs")
    inputs_collector = Collector(name="model_inputs")
    print("init done")


def run(raw):
    data = json.loads(raw)
    if data.get("print"):
        print(json.dumps({"seen": data["print"]}))
    if data.get("log"):
        log.warning("scoring %s", data["log"])
    if data.get("call"):
        urllib.request.urlopen(data["call"]).read()
    if data.get("collect"):
        inputs_dc.collect(data["collect"])
        inputs_collector.collect(pd.DataFrame({"v": data["collect"]}))
    if data.get("fail"):
        raise ValueError("asked to fail")
    return {"n": len(raw)}
'''


class Service:
    def __init__(self, tmp_path, receiver: Receiver | str, **env: str) -> None:
        connection_string = receiver if isinstance(receiver, str) else receiver.connection_string
        script = tmp_path / "svc" / "score.py"
        script.parent.mkdir(exist_ok=True)
        script.write_text(textwrap.dedent(SCORE_PY))
        self.home = tmp_path / "ws"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {"SCOREWATCH_EXPORTER_INTERVAL_MS": "100", "SCOREWATCH_EXPORTER_RETRY_MAX_S": "0.5", **env}
        self.server = ServerProcess(["serve", str(script), "--port", str(self.port), "--home", str(self.home),
                                     "--connection-string", connection_string],
                                    log_dir=tmp_path, env=env)

    def __enter__(self) -> Service:
        self.server.start()
        try:
            wait_for_http(f"{self.url}/health/ready", expect_status=200, proc=self.server.proc)
        except Exception:
            self.server.stop()
            raise RuntimeError(self.server.output()) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def score(self, body: dict | bytes, **headers: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return httpx.post(f"{self.url}/score", content=content, timeout=30,
                          headers={"content-type": "application/json", **headers})


def n_requests(items) -> int:
    return len([i for i in items if i["data"]["baseType"] == "RequestData"])


def base(item):
    return item["data"]["baseData"]


def test_every_record_kind_arrives_correlated(tmp_path, receiver, native):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with Service(tmp_path, receiver) as svc:
        ok = svc.score({"print": "hello", "log": "carefully", "call": f"{receiver.url}/echo", "collect": [1, 2]},
                       traceparent=f"00-{trace_id}-00f067aa0ba902b7-01", **{"x-request-id": "r-ok"})
        assert ok.status_code == 200
        failed = svc.score({"fail": True, "print": "before failing"}, **{"x-request-id": "r-fail"})
        assert failed.status_code == 500
        refused = svc.score({"print": "never run"}, **{"x-request-id": "r" * 101})  # a client error
        assert refused.status_code == 431
        receiver.wait_for(lambda items: len([i for i in items if i["data"]["baseType"] == "RequestData"]) == 3
                          and any(i["data"]["baseType"] == "ExceptionData" for i in items))
        deadline = time.monotonic() + 10  # the exporter process reports its counters twice a second
        while not re.search(r'^scorewatch_telemetry_sent_total\{pid="\d+"\} [1-9]', metrics := httpx.get(
                f"{svc.url}/metrics").text, re.M) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert re.search(r'^scorewatch_telemetry_sent_total\{pid="\d+"\} [1-9]', metrics, re.M), metrics
    assert re.search(r'^scorewatch_telemetry_shipped_total\{pid="\d+"\} [1-9]', metrics, re.M)
    # Which paths ran: in the log at start, and on /metrics (SCOREWATCH_NATIVE=0 in the python runs).
    for part in ("recorder", "envelopes"):
        assert re.search(rf'^scorewatch_telemetry_native{{pid="\d+",part="{part}"}} {int(native)}$', metrics, re.M)
    expected = "_worker: C; _rows: C" if native else "_worker: Python (the native setting is off: SCOREWATCH_NATIVE=0)"
    assert f"telemetry paths: {expected}" in svc.server.output()
    items = receiver.items
    requests_ = {base(i)["properties"]["Request Id"]: i for i in items if i["data"]["baseType"] == "RequestData"}
    ok_req, failed_req = requests_["r-ok"], requests_["r-fail"]
    [refused_req] = [r for key, r in requests_.items() if key not in ("r-ok", "r-fail")]
    assert (base(refused_req)["responseCode"], base(refused_req)["success"]) == ("431", False)
    assert ok_req["tags"]["ai.operation.id"] == trace_id
    assert ok_req["tags"]["ai.operation.parentId"] == "00f067aa0ba902b7"
    assert (base(ok_req)["responseCode"], base(ok_req)["success"]) == ("200", True)
    assert (base(failed_req)["responseCode"], base(failed_req)["success"]) == ("500", False)
    assert base(ok_req)["duration"] != "0.00:00:00.000000"
    assert set(base(ok_req)["properties"]) == {"Request Id", "Client Request Id", "Container Id",
                                               "Workspace Name", "Service Name"}
    assert base(ok_req)["properties"]["Service Name"] == "svc" and ok_req["tags"]["ai.cloud.role"] == "svc"

    def of(op_id, base_type, message=None):
        return [i for i in items if i["tags"].get("ai.operation.id") == op_id and i["data"]["baseType"] == base_type
                and (message is None or base(i).get("message") == message)]

    [printed] = of(trace_id, "MessageData", "STDOUT")
    assert base(printed)["properties"]["Contents"] == {"seen": "hello"}
    [logged] = of(trace_id, "MessageData", "scoring carefully")
    assert base(logged)["severityLevel"] == 2 and base(logged)["properties"]["loggerName"] == "score"
    [model_data] = of(trace_id, "MessageData", "model_data_collection")
    assert orjson.loads(base(model_data)["properties"]["Input"])["print"] == "hello"
    assert orjson.loads(base(model_data)["properties"]["Prediction"])["n"] > 0
    [dependency] = of(trace_id, "RemoteDependencyData")
    assert base(dependency)["data"] == f"{receiver.url}/echo" and base(dependency)["resultCode"] == "200"

    [collected] = of(trace_id, "MessageData", "model_data_collector")
    assert base(collected)["properties"]["Data"] == "[1,2]" and base(collected)["properties"]["Request Id"] == "r-ok"
    [frame] = of(trace_id, "MessageData", "collector")
    assert base(frame)["properties"]["Correlation Id"] == "r-ok"
    assert orjson.loads(base(frame)["properties"]["Data"]) == [{"v": 1}, {"v": 2}]

    failed_op = failed_req["tags"]["ai.operation.id"]
    [exc] = of(failed_op, "ExceptionData")
    assert base(exc)["exceptions"][0]["typeName"] == "ValueError"
    assert base(exc)["exceptions"][0]["parsedStack"][0]["method"] == "run"
    # the recorded stack starts at the user's frames: none of scorewatch's around run()
    assert [f["fileName"].endswith("svc/score.py") for f in base(exc)["exceptions"][0]["parsedStack"]] == [True]
    assert base(exc)["severityLevel"] == 3
    [printed_before] = of(failed_op, "MessageData", "STDOUT")
    assert base(printed_before)["properties"]["Contents"] == {"seen": "before failing"}
    [failed_md] = of(failed_op, "MessageData", "model_data_collection")
    assert "message" in orjson.loads(base(failed_md)["properties"]["Error"])
    assert [base(i)["properties"]["Contents"] for i in items if base(i).get("message") == "STDOUT"
            and "ai.operation.id" not in i["tags"]] == ["init done"]


def test_ten_mib_input_is_recoverable_from_its_blob(tmp_path, receiver):
    body = orjson.dumps({"pad": "0123456789abcdef" * (10 * 1024 * 1024 // 16)})
    with Service(tmp_path, receiver) as svc:
        assert svc.score(body, **{"x-request-id": "big"}).status_code == 200
        items = receiver.wait_for(lambda items: any(base(i).get("message") == "model_data_collection"
                                                    for i in items))
    [md] = [i for i in items if base(i).get("message") == "model_data_collection"]
    marker = base(md)["properties"]["Input"]
    assert marker["size"] == len(body) and marker["blob"] == "sha256:" + hashlib.sha256(body).hexdigest()
    assert BlobStore(svc.home / "blobs").get(marker) == body


@pytest.mark.slow
def test_receiver_outage_loses_nothing(tmp_path):
    receiver = Receiver().start()
    try:
        with Service(tmp_path, receiver) as svc:
            for i in range(10):
                assert svc.score({"i": i}).status_code == 200
            receiver.wait_for(lambda items: n_requests(items) == 10)
            receiver.stop()
            for i in range(10, 25):
                assert svc.score({"i": i}).status_code == 200
            time.sleep(0.5)  # let batches fail and spool while the receiver is down
            receiver.start()
            items = receiver.wait_for(lambda items: n_requests(items) >= 25, timeout=30)
        inputs = sorted(orjson.loads(base(i)["properties"]["Input"])["i"] for i in items
                        if base(i).get("message") == "model_data_collection")
        assert inputs == list(range(25))
        assert len([i for i in items if i["data"]["baseType"] == "RequestData"]) == 25
    finally:
        receiver.stop()


def test_sigterm_flushes_queued_items(tmp_path, receiver):
    svc = Service(tmp_path, receiver, SCOREWATCH_EXPORTER_INTERVAL_MS="600000")
    with svc:
        for i in range(30):
            assert svc.score({"i": i}).status_code == 200
        assert receiver.items == []  # nothing sent yet: the batch is neither full nor due
    # Service.__exit__ sent SIGTERM and waited for the process to end (uvicorn re-raises the signal).
    assert "Finished server process" in svc.server.output()
    assert len([i for i in receiver.items if i["data"]["baseType"] == "RequestData"]) == 30


def switched(route: str, auth: dict[str, str], revision: int, workers: int = 1, timeout: float = 10) -> dict:
    """The route's answer once ``workers`` workers have acknowledged ``revision`` of the state."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(route, headers=auth).json()
        acks = answer["workers"]
        if len(acks) == workers and all(applied >= revision for applied in acks.values()):
            return answer
        assert time.monotonic() < deadline, f"not every worker applied revision {revision}: {answer}"
        time.sleep(0.02)


def control_key(svc: Service) -> dict[str, str]:
    key = next((svc.home / "services").glob("*.control-key")).read_text()
    return {"Authorization": f"Bearer {key}"}


def test_runtime_switch_through_the_control_route(tmp_path, receiver):
    with Service(tmp_path, receiver) as svc:
        route = f"{svc.url}/control/telemetry"
        assert httpx.post(route, json={"monitoring": False}).status_code == 401
        auth = control_key(svc)
        assert httpx.post(route, json={"monitoring": "yes"}, headers=auth).status_code == 400
        state = httpx.post(route, json={"enable_app_insights": False}, headers=auth).json()
        assert {k: state[k] for k in ("monitoring", "model_data", "sampling_percentage")} == {
            "monitoring": False, "model_data": True, "sampling_percentage": 100.0}
        switched(route, auth, state["revision"])
        svc.score({"i": "off"}, **{"x-request-id": "while-off"})
        state = httpx.post(route, json={"monitoring": True, "model_data": False}, headers=auth).json()
        switched(route, auth, state["revision"])
        svc.score({"i": "on"}, **{"x-request-id": "while-on"})
        receiver.wait_for(lambda items: any(i["data"]["baseType"] == "RequestData" for i in items))
        assert httpx.get(route, headers=auth).json()["model_data"] is False
    ids = [base(i)["properties"].get("Request Id") for i in receiver.items]
    assert "while-off" not in ids and ids.count("while-on") == 1


def test_a_service_started_with_monitoring_off_is_switched_on_and_off(tmp_path, receiver):
    svc = Service(tmp_path, receiver, SCOREWATCH_APP_INSIGHTS="false")
    with svc:
        route, auth = f"{svc.url}/control/telemetry", control_key(svc)
        state = switched(route, auth, 1)
        assert state["monitoring"] is False
        svc.score({"print": "unseen"}, **{"x-request-id": "before"})
        assert "telemetry is switched off" in svc.server.output()
        assert not list((svc.home / "services").glob("*.exporter.json"))  # no exporter process while off
        state = httpx.post(route, json={"enable_app_insights": True}, headers=auth).json()
        switched(route, auth, state["revision"])
        svc.score({"print": "seen"}, **{"x-request-id": "after"})
        items = receiver.wait_for(lambda items: n_requests(items) >= 1 and any(
            base(i).get("message") == "model_data_collection" for i in items))
        state = httpx.post(route, json={"enable_app_insights": False}, headers=auth).json()
        switched(route, auth, state["revision"])
        svc.score({"print": "unseen again"}, **{"x-request-id": "off-again"})
    items = receiver.items
    ids = [base(i)["properties"].get("Request Id") for i in items if i["data"]["baseType"] == "RequestData"]
    assert ids == ["after"]
    printed = [base(i)["properties"]["Contents"] for i in items if base(i).get("message") == "STDOUT"
               and "ai.operation.id" in i["tags"]]
    assert printed == [{"seen": "seen"}]


@pytest.mark.slow
def test_runtime_switch_reaches_every_worker(tmp_path, receiver):
    svc = Service(tmp_path, receiver)
    svc.server.args += ["--workers", "2"]
    with svc:
        route, auth = f"{svc.url}/control/telemetry", control_key(svc)
        state = httpx.post(route, json={"monitoring": False}, headers=auth).json()
        assert len(switched(route, auth, state["revision"], workers=2)["workers"]) == 2
        pids = set()
        for i in range(30):  # a new connection each time: the kernel spreads them over the workers
            assert svc.score({"i": i}, **{"x-request-id": f"off-{i}"}).status_code == 200
            pids.update(re.findall(r'pid="(\d+)"', httpx.get(f"{svc.url}/metrics").text))
        state = httpx.post(route, json={"monitoring": True}, headers=auth).json()
        switched(route, auth, state["revision"], workers=2)
        for i in range(30):
            svc.score({"i": i}, **{"x-request-id": f"on-{i}"})
        items = receiver.wait_for(lambda items: n_requests(items) >= 30)
    assert len(pids) == 2
    ids = {base(i)["properties"]["Request Id"] for i in items if i["data"]["baseType"] == "RequestData"}
    assert ids == {f"on-{i}" for i in range(30)}


@pytest.mark.slow
def test_reports_to_the_hub_and_rows_are_queryable(tmp_path):
    hub_port = free_port()
    hub_home = tmp_path / "hub"
    hub = ServerProcess(["hub", "--home", str(hub_home), "--port", str(hub_port)], log_dir=tmp_path).start()
    try:
        wait_for_http(f"http://127.0.0.1:{hub_port}/v1/apps/x/query", proc=hub.proc)
        app = orjson.loads((hub_home / "config.json").read_bytes())["default_app"]
        with Service(tmp_path, app["connection_string"]) as svc:
            svc.score({"print": "to the hub"}, **{"x-request-id": "hub-ok"})
            svc.score({"fail": True}, **{"x-request-id": "hub-fail"})

        def query(kql: str) -> list[list]:
            response = httpx.get(f"http://127.0.0.1:{hub_port}/v1/apps/{app['app_id']}/query",
                                 params={"query": kql}, headers={"x-api-key": app["api_key"]}, timeout=30)
            assert response.status_code == 200, response.text
            return response.json()["tables"][0]["rows"]

        deadline = time.monotonic() + 20
        while len(query("requests | project id")) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        rows = query("requests | project tostring(customDimensions['Request Id']), resultCode, success, "
                     "operation_Id | order by resultCode asc")
        assert [r[:3] for r in rows] == [["hub-ok", "200", True], ["hub-fail", "500", False]]
        ok_op, failed_op = rows[0][3], rows[1][3]
        printed = query("traces | where message == 'STDOUT' and isnotempty(operation_Id) "
                        "| project operation_Id, tostring(customDimensions.Contents.seen)")
        assert printed == [[ok_op, "to the hub"]]
        assert query("exceptions | project operation_Id, outerType") == [[failed_op, "ValueError"]]
        assert len(query("traces | where message == 'model_data_collection'")) == 2
    finally:
        hub.stop()


def test_service_keys_open_the_control_route_and_model_data_can_start_off(tmp_path, receiver):
    svc = Service(tmp_path, receiver, SCOREWATCH_AUTH_PRIMARY_KEY="service-key-1")
    svc.server.args += ["--auth", "--no-collect-model-data"]
    with svc:
        route = f"{svc.url}/control/telemetry"
        auth = {"Authorization": "Bearer service-key-1"}
        assert httpx.get(route, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(route, headers=auth).json()["model_data"] is False
        assert svc.score({"i": 1}, **auth, **{"x-request-id": "keyed"}).status_code == 200
        receiver.wait_for(lambda items: n_requests(items) == 1)
    assert not [i for i in receiver.items if base(i).get("message") == "model_data_collection"]
    assert not list((svc.home / "services").glob("*.control-key"))  # the service's keys were used
