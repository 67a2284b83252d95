"""The monitor in-process: every record kind, correlation, blobs, sampling, runtime control, /metrics."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import urllib.request

import httpx
import pytest
import requests
import urllib3

from scorewatch.settings import Settings
from scorewatch.telemetry.blobs import BlobStore
from scorewatch.telemetry.context import Operation, ServiceInfo, current_operation, new_span_id, new_trace_id
from scorewatch.telemetry.exporter import InMemoryExporter
from scorewatch.telemetry.monitor import create_monitor
from scorewatch.telemetry.rows import Text

INFO = ServiceInfo(service_name="svc", workspace_name="ws", entry_script="score.py", model_dir=None,
                   container_id="container-1", models=["ridge:3"])


@pytest.fixture
def settings(tmp_path, native):
    return Settings(home=tmp_path / "ws", connection_string="InstrumentationKey=abc-def;IngestionEndpoint=http://127.0.0.1:9",
                    exporter_interval_ms=50, inline_limit=1024, port=5999, native=native)


@pytest.fixture
def monitor(settings):
    exporter = InMemoryExporter()
    m = create_monitor(settings, INFO, exporter=exporter)
    # worker_started() (which swaps sys.stdout) runs inside each test: pytest re-installs its own
    # capture streams between setup and call.
    yield m
    m.shutdown(5)


def items(monitor, base_type=None, message=None):
    monitor.worker_started()
    monitor.pipeline.processor.force_flush(5)
    out = monitor.pipeline.exporter.items
    if base_type:
        out = [i for i in out if i["data"]["baseType"] == base_type]
    if message:
        out = [i for i in out if i["data"]["baseData"].get("message") == message]
    return out


def scored(op, *, status=200, body=b'{"data": [1]}', output=b"[2]", exc=None):
    """The facts the endpoint gives ``request_finished`` for one request."""
    scope = {"type": "http", "method": "POST", "scheme": "http", "server": ("127.0.0.1", 5999), "path": "/score",
             "query_string": b"", "headers": []}
    op = dataclasses.replace(op, request_id="req-1", client_request_id="client-1")
    return (op, scope, time.time(), 12.5, status, body, output, exc)


def new_op():
    return Operation(operation_id=new_trace_id(), parent_id=new_span_id(), name="POST /score",
                     request_id="req-1")


def serve(monitor, op, work, **kwargs):
    """Run ``work`` as the scoring app runs run(): with the operation set; then finish the request."""
    monitor.worker_started()
    token = current_operation.set(op)
    exc = None
    try:
        work()
    except Exception as e:
        exc = e
        monitor.exception(e, during="run")
    finally:
        current_operation.reset(token)
    monitor.request_finished(*scored(op, exc=exc, status=500 if exc else 200, **kwargs))


def test_request_and_model_data_fields(monitor):
    op = new_op()
    serve(monitor, op, lambda: None)
    [req] = items(monitor, "RequestData")
    base = req["data"]["baseData"]
    assert req["name"] == "Microsoft.ApplicationInsights.abcdef.Request"
    assert (base["name"], base["responseCode"], base["success"], base["duration"]) == (
        "POST /score", "200", True, "0.00:00:00.012500")
    assert base["id"] == op.parent_id and req["tags"]["ai.operation.id"] == op.operation_id
    assert req["tags"]["ai.cloud.role"] == "svc" and req["tags"]["ai.cloud.roleInstance"]
    assert base["properties"] == {"Container Id": "container-1", "Workspace Name": "ws", "Service Name": "svc",
                                  "Request Id": "req-1", "Client Request Id": "client-1"}
    [md] = items(monitor, "MessageData", "model_data_collection")
    props = md["data"]["baseData"]["properties"]
    assert props["Input"] == '{"data": [1]}' and props["Prediction"] == "[2]" and props["Models"] == "ridge:3"
    assert md["tags"]["ai.operation.id"] == op.operation_id


def test_writes_become_lines_however_they_are_split(monitor):
    import sys
    import threading

    def other_thread() -> None:
        print("from a thread", end="")  # a text held back on its own thread ...
        print(" of its own")            # ... and its line's end, never mixed with the main thread's

    def work():
        print("one")                                   # text, then newline: one row
        sys.stdout.write("two, ")                      # a line in three writes
        sys.stdout.write("and ")
        sys.stdout.write("three\n")
        sys.stdout.write("four\nfive\n")              # whole lines in one write
        print("six", end="")
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        print(" and seven")                            # ends the line begun before the thread ran
        print()                                        # a blank line: nothing

    op = new_op()
    serve(monitor, op, work)
    lines = [i["data"]["baseData"]["properties"]["Contents"] for i in items(monitor, "MessageData", "STDOUT")]
    assert sorted(lines) == sorted(["one", "two, and three", "four\nfive", "from a thread of its own",
                                    "six and seven"])


def test_print_is_one_row_and_one_write_and_every_other_print_still_works(monitor, capsys):
    import builtins
    import contextlib
    import io
    import sys

    builtin = builtins.print
    redirected = io.StringIO()

    def work():
        assert builtins.print is not builtin  # the sink's print while capturing
        rows_before = len(monitor.pipeline.processor.rows)
        print("plain", 2, {"a": 1})                    # values only: one LINE row, one write
        assert monitor.pipeline.processor.rows[rows_before:][-1][:4][::3] == (Text.LINE, "plain 2 {'a': 1}")
        print("a", "b", sep="-", end="!\n")           # the builtin's way, through the proxy
        print("to stderr", file=sys.stderr)
        print("flushed", flush=True)
        print("ends its own line\n")                  # a line and a blank one
        with contextlib.redirect_stdout(redirected):
            print("not ours")                          # sys.stdout is someone else's now

    op = new_op()
    serve(monitor, op, work)
    traces = items(monitor, "MessageData")
    stdout = [i["data"]["baseData"]["properties"]["Contents"] for i in traces
              if i["data"]["baseData"]["message"] == "STDOUT"]
    assert sorted(stdout) == sorted(["plain 2 {'a': 1}", "a-b!", "flushed", "ends its own line"])
    assert all(i["tags"]["ai.operation.id"] == op.operation_id for i in traces
               if i["data"]["baseData"]["message"] in ("STDOUT", "STDERR"))
    assert [i["data"]["baseData"]["properties"]["Contents"] for i in traces
            if i["data"]["baseData"]["message"] == "STDERR"] == ["to stderr"]
    assert redirected.getvalue() == "not ours\n"
    out = capsys.readouterr().out  # written through, as the builtin would have
    assert out == "plain 2 {'a': 1}\na-b!\nflushed\nends its own line\n\n"
    monitor.shutdown(5)
    assert builtins.print is builtin  # given back


def test_print_log_and_exception_share_the_operation_id(monitor):
    op = new_op()

    def work():
        print("plain text")
        print(json.dumps({"score": 0.5, "label": "a"}))
        print("to stderr", file=__import__("sys").stderr)
        logging.getLogger("user.model").warning("careful: %s", "x")
        raise ValueError("bad input") from KeyError("k")

    serve(monitor, op, work)
    out = items(monitor)
    stdout = [i for i in out if i["data"]["baseData"].get("message") == "STDOUT"]
    assert [i["data"]["baseData"]["properties"]["Contents"] for i in stdout] == [
        "plain text", {"score": 0.5, "label": "a"}]
    [stderr] = [i for i in out if i["data"]["baseData"].get("message") == "STDERR"]
    assert stderr["data"]["baseData"]["properties"]["Contents"] == "to stderr"
    [log] = [i for i in out if i["data"]["baseData"].get("message") == "careful: x"]
    assert log["data"]["baseData"]["severityLevel"] == 2
    assert log["data"]["baseData"]["properties"]["loggerName"] == "user.model"
    assert log["data"]["baseData"]["properties"]["fileName"].endswith("test_monitor.py")
    assert int(log["data"]["baseData"]["properties"]["lineNumber"]) > 0
    [exc] = items(monitor, "ExceptionData")
    base = exc["data"]["baseData"]
    assert base["severityLevel"] == 3 and base["problemId"] == "ValueError at work"
    assert [(e["typeName"], e["message"]) for e in base["exceptions"]] == [("ValueError", "bad input"),
                                                                          ("KeyError", "'k'")]
    assert base["exceptions"][0]["parsedStack"][0]["method"] == "work"
    assert base["exceptions"][0]["parsedStack"][0]["line"] > 0
    [req] = items(monitor, "RequestData")
    assert req["data"]["baseData"]["success"] is False and req["data"]["baseData"]["responseCode"] == "500"
    for item in (*stdout, stderr, log, exc, req):
        assert item["tags"]["ai.operation.id"] == op.operation_id


def test_exception_without_context_is_recorded_once_with_the_request(monitor):
    op = new_op()
    try:
        raise RuntimeError("boom")
    except RuntimeError as e:
        monitor.exception(e, during="run")  # called outside the request's context
        monitor.request_finished(*scored(op, status=500, exc=e, output=b'{"message": "boom"}'))
    [exc] = items(monitor, "ExceptionData")
    assert exc["tags"]["ai.operation.id"] == op.operation_id
    [md] = items(monitor, "MessageData", "model_data_collection")
    assert md["data"]["baseData"]["properties"]["Error"] == '{"message": "boom"}'


def test_init_output_and_exception_are_recorded(monitor):
    monitor.worker_started()
    print("loading model")
    try:
        raise OSError("model file missing")
    except OSError as e:
        monitor.exception(e, during="init")
    [line] = items(monitor, "MessageData", "STDOUT")
    assert line["data"]["baseData"]["properties"]["Contents"] == "loading model"
    [exc] = items(monitor, "ExceptionData")
    assert exc["data"]["baseData"]["properties"]["During"] == "init"


def test_large_and_binary_payloads_go_to_blobs(monitor, settings):
    big = bytes(range(256)) * 40_000 + b"tail"  # ~10 MB, not UTF-8
    serve(monitor, new_op(), lambda: None, body=big, output=b"x" * 2000)
    [md] = items(monitor, "MessageData", "model_data_collection")
    props = md["data"]["baseData"]["properties"]
    blobs = BlobStore(settings.home / "blobs")
    assert props["Input"]["size"] == len(big) and blobs.get(props["Input"]) == big
    assert blobs.get(props["Prediction"]["blob"]) == b"x" * 2000
    assert props["Prediction"]["preview"].startswith("xxx")


def test_dependencies_from_each_http_client_carry_traceparent(monitor, receiver):
    op = new_op()
    seen = []

    def work():
        seen.append(requests.get(f"{receiver.url}/echo").json())
        seen.append(httpx.get(f"{receiver.url}/echo?status=404").json())
        with urllib3.PoolManager() as pool:
            seen.append(json.loads(pool.request("GET", f"{receiver.url}/echo").data))
        with urllib.request.urlopen(f"{receiver.url}/echo") as response:
            seen.append(json.loads(response.read()))

    serve(monitor, op, work)
    deps = items(monitor, "RemoteDependencyData")
    assert len(deps) == 4, [d["data"]["baseData"]["data"] for d in deps]
    for dep, headers in zip(sorted(deps, key=lambda d: d["time"]), seen, strict=True):
        base = dep["data"]["baseData"]
        assert base["type"] == "HTTP" and base["target"] == f"127.0.0.1:{receiver.port}"
        assert base["data"].startswith(f"{receiver.url}/echo")
        assert dep["tags"]["ai.operation.id"] == op.operation_id
        assert dep["tags"]["ai.operation.parentId"] == op.parent_id
        assert headers["traceparent"].startswith(f"00-{op.operation_id}-{base['id']}-")
    codes = sorted((d["data"]["baseData"]["resultCode"], d["data"]["baseData"]["success"]) for d in deps)
    assert codes == [("200", True)] * 3 + [("404", False)]


def test_public_api(monitor):
    import scorewatch

    op = new_op()

    def work():
        with scorewatch.track_dependency("SELECT 1", type="SQL", target="db") as call:
            call.result_code = "0"
        with pytest.raises(KeyError), scorewatch.track_dependency("GET key", type="Redis"):
            raise KeyError("missing")
        scorewatch.track_event("scored", {"model": "ridge"}, {"rows": 3})
        scorewatch.track_metric("latency", 1.5)

    serve(monitor, op, work)
    deps = sorted(items(monitor, "RemoteDependencyData"), key=lambda d: d["data"]["baseData"]["name"])
    assert [(d["data"]["baseData"]["type"], d["data"]["baseData"]["success"], d["data"]["baseData"]["resultCode"])
            for d in deps] == [("Redis", False, "KeyError"), ("SQL", True, "0")]
    [event] = items(monitor, "EventData")
    assert event["data"]["baseData"]["name"] == "scored" and event["data"]["baseData"]["measurements"] == {"rows": 3}
    [metric] = items(monitor, "MetricData")
    assert metric["data"]["baseData"]["metrics"][0]["value"] == 1.5
    assert all(i["tags"]["ai.operation.id"] == op.operation_id for i in (*deps, event, metric))


def test_api_is_a_no_op_without_a_monitor():
    import scorewatch

    with scorewatch.track_dependency("x") as call:
        call.result_code = "1"
    scorewatch.track_event("e")
    scorewatch.track_metric("m", 1)


def test_sampling_keeps_failures_and_marks_sample_rate(monitor):
    monitor.control.update({"sampling_percentage": 0})
    monitor._tick()
    serve(monitor, new_op(), lambda: print("dropped"))
    serve(monitor, new_op(), lambda: 1 / 0)
    out = items(monitor)
    assert [i["data"]["baseData"]["success"] for i in out if i["data"]["baseType"] == "RequestData"] == [False]
    assert len([i for i in out if i["data"]["baseType"] == "ExceptionData"]) == 1
    assert not [i for i in out if i["data"]["baseData"].get("message") == "STDOUT"]


def test_a_client_error_is_a_failed_request_kept_whole_whatever_the_sampling(monitor):
    # 4xx is a failure as Application Insights counts it (success = status < 400): never sampled out,
    # its model data carries the error; a 3xx is a success, sampled as any other.
    monitor.control.update({"sampling_percentage": 0})
    monitor._tick()
    for status in (301, 400, 404, 499):
        monitor.worker_started()
        monitor.request_finished(*scored(new_op(), status=status, output=b'{"message": "no"}'))
    [*requests] = items(monitor, "RequestData")
    assert [(r["data"]["baseData"]["responseCode"], r["data"]["baseData"]["success"]) for r in requests] == [
        ("400", False), ("404", False), ("499", False)]
    assert not any("sampleRate" in r for r in requests)
    traces = items(monitor, "MessageData", "model_data_collection")
    assert [(t["data"]["baseData"]["properties"]["Status Code"], t["data"]["baseData"]["properties"]["Error"])
            for t in traces] == [(code, '{"message": "no"}') for code in ("400", "404", "499")]


def test_sampled_items_carry_sample_rate(monitor):
    monitor.control.update({"sampling_percentage": 50})
    monitor._tick()
    for _ in range(200):
        serve(monitor, new_op(), lambda: None)
    reqs = items(monitor, "RequestData")
    assert 40 < len(reqs) < 160 and all(r["sampleRate"] == 50.0 for r in reqs)


def test_runtime_switch_reaches_another_worker_via_the_state_file(monitor, settings):
    other = create_monitor(settings, INFO, exporter=InMemoryExporter())  # a second worker process' view
    assert other.control.state.monitoring is True
    monitor.control.update({"enable_app_insights": False, "collect_model_data": False})
    assert other.control.poll(force=True).monitoring is False
    monitor._tick()
    serve(monitor, new_op(), lambda: print("not recorded"))
    assert items(monitor) == []
    monitor.control.update({"monitoring": True})
    monitor._tick()
    serve(monitor, new_op(), lambda: None)
    assert [i["data"]["baseType"] for i in items(monitor)] == ["RequestData"]  # model data still off


def test_metrics_text_has_exporter_counters(monitor):
    serve(monitor, new_op(), lambda: None)
    items(monitor)
    text = monitor.metrics_text()
    assert 'scorewatch_telemetry_queued_total{pid="' in text
    assert 'scorewatch_telemetry_dropped_total{pid="' in text and 'reason="queue_full"} 0' in text
    assert "scorewatch_telemetry_queue_depth{" in text


def test_queue_overflow_drops_and_counts(settings):
    m = create_monitor(settings.replace(exporter_queue_size=5, exporter_interval_ms=60_000), INFO,
                       exporter=InMemoryExporter())
    m.worker_started()
    try:
        for _ in range(20):
            m.request_finished(*scored(new_op()))
        assert m.stats.dropped["queue_full"] == 15
    finally:
        m.shutdown(5)
    assert len([i for i in m.pipeline.exporter.items if i["data"]["baseType"] == "RequestData"]) == 5


def test_bad_connection_string_or_workspace_is_a_clear_error(tmp_path, settings):
    from scorewatch.errors import ConfigError

    with pytest.raises(ConfigError, match="InstrumentationKey"):
        create_monitor(settings.replace(connection_string="IngestionEndpoint=http://x"), INFO)
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(ConfigError, match="workspace"):
        create_monitor(settings.replace(home=blocked / "ws"), INFO)


def test_long_prints_and_log_messages_go_to_blobs_whole(monitor, settings):
    long_line = "y" * 5000  # over the 1 KiB inline limit of these tests
    serve(monitor, new_op(), lambda: (print(long_line), logging.getLogger("user").error(long_line)))
    blobs = BlobStore(settings.home / "blobs")
    [printed] = items(monitor, "MessageData", "STDOUT")
    assert blobs.get(printed["data"]["baseData"]["properties"]["Contents"]) == long_line.encode()
    [logged] = [i for i in items(monitor, "MessageData") if i["data"]["baseData"]["properties"].get("loggerName") == "user"]
    assert logged["data"]["baseData"]["message"] == long_line[:256]  # the preview
    assert blobs.get(logged["data"]["baseData"]["properties"]["Message"]) == long_line.encode()
