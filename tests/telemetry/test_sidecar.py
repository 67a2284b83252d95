"""The exporter process: rows in through a pipe, envelopes out to a real receiver, counters back."""

from __future__ import annotations

import os
import signal
import time

import orjson
import pytest

from scorewatch.errors import ConfigError
from scorewatch.telemetry import rows
from scorewatch.telemetry.exporter import ExportResult
from scorewatch.telemetry.metrics import ExporterStats
from scorewatch.telemetry.sidecar import SidecarExporter, parse_cpus
from scorewatch.telemetry.templates import ROWS_PER_PAUSE, Templates


def templates(native: bool) -> Templates:
    return Templates("ikey-1", role="svc", role_instance="host", base_properties={"Service Name": "svc"},
                     models="m:1", native=native)


def make(tmp_path, receiver, native, **extra) -> SidecarExporter:
    config = {"track_url": receiver.url + "/v2.1/track", "spool_dir": str(tmp_path / "spool"),
              "spool_max_bytes": 10_000_000, "retry_max_s": 0.2, "batch_size": 100, "interval_s": 60.0,
              "stats_path": str(tmp_path / "exporter.json"), "templates": templates(native).config(), **extra}
    return SidecarExporter(config, ExporterStats())


def request_row(i: int, input: str = '{"x": 1}'):
    return rows.make_request(start=1.7e9, operation_id="a" * 32, span_id="b" * 16, caller=None, name="POST /score",
                             url="http://h/score", duration_ms=1.5, status=200, success=True, request_id=f"r{i}",
                             client_request_id=f"r{i}", input=input, prediction="[2]", sample_rate=100.0,
                             model_data=True)


def frame(*batch):
    """What the worker's processor hands the exporter for a batch of rows."""
    return (rows.FRAME, Templates.frame(list(batch)), len(batch))


def test_rows_become_envelopes_at_the_receiver(tmp_path, receiver, native):
    exporter = make(tmp_path, receiver, native)
    try:
        printed = rows.make_text(rows.Text.LINE, time=1.7e9, stream=rows.STDOUT, text='{"k": [1]}', thread=1,
                                 operation_id="a" * 32, parent_id="b" * 16, operation_name="POST /score",
                                 sample_rate=100.0)
        batch = [frame(*[request_row(i) for i in range(3)]), frame(printed)]
        batch.append(orjson.dumps({"name": "x", "iKey": "ikey-1", "data": {"baseType": "EventData",
                                                                            "baseData": {"name": "e"}}}))
        assert exporter.export(batch) is ExportResult.SUCCESS
        assert exporter.force_flush(10)
        kinds = sorted(i["data"]["baseType"] for i in receiver.items)
        assert kinds == ["EventData"] + ["MessageData"] * 4 + ["RequestData"] * 3
        [printed] = [i for i in receiver.items if i["data"]["baseData"].get("message") == "STDOUT"]
        assert printed["data"]["baseData"]["properties"]["Contents"] == {"k": [1]}
        assert exporter.remote_stats()["sent"] == 8
    finally:
        exporter.shutdown(10)
    assert exporter._proc is not None and exporter._proc.returncode == 0


def test_the_exporter_process_keeps_to_the_cpus_it_is_given(tmp_path, receiver, native):
    cpu = max(os.sched_getaffinity(0))
    exporter = make(tmp_path, receiver, native, cpus=parse_cpus(str(cpu)))
    try:
        assert exporter.export([frame(request_row(1))]) is ExportResult.SUCCESS
        assert exporter.force_flush(10)  # it is up and has read its config
        assert os.sched_getaffinity(exporter._proc.pid) == {cpu}
        assert len(receiver.items) == 2
    finally:
        exporter.shutdown(10)


@pytest.mark.parametrize("text", ["x", "0-", "2-1", "1,,2", "100000", "0-999999999999"])
def test_a_bad_cpu_list_is_a_clear_error(text):
    with pytest.raises(ConfigError, match="exporter_cpus"):
        parse_cpus(text)


def test_closing_sends_what_the_process_holds(tmp_path, receiver, native):
    exporter = make(tmp_path, receiver, native)
    exporter.export([frame(request_row(i)) for i in range(5)])  # under the batch size, interval 60 s
    exporter.shutdown(10)
    assert len([i for i in receiver.items if i["data"]["baseType"] == "RequestData"]) == 5


def test_a_dead_exporter_process_is_restarted(tmp_path, receiver, native):
    exporter = make(tmp_path, receiver, native)
    try:
        assert exporter._proc is not None
        os.kill(exporter._proc.pid, signal.SIGKILL)
        exporter._proc.wait()
        time.sleep(0.1)
        assert exporter.export([frame(request_row(1))]) is ExportResult.SUCCESS
        assert exporter.force_flush(10)
        assert len(receiver.items) == 2
    finally:
        exporter.shutdown(10)


def test_shutdown_does_not_hang_on_a_stuck_exporter_process_and_spools_leftovers(tmp_path, receiver, native):
    import threading

    from scorewatch.telemetry.exporter import decode
    from scorewatch.telemetry.spool import Spool

    exporter = make(tmp_path, receiver, native)
    exporter.spool = Spool(tmp_path / "spool", 10_000_000, exporter.stats)
    exporter.templates = templates(native)
    stuck = exporter._proc
    assert stuck is not None
    os.kill(stuck.pid, signal.SIGSTOP)  # reads nothing: the pipe fills, the writer blocks
    try:
        # 200 frames of ~20 KB: more than the pipe holds (1 MiB where the pipe can be grown, else 64 KiB).
        padded = frame(request_row(0, input="x" * 20_000))
        writer = threading.Thread(target=lambda: [exporter.export([padded]) for _ in range(200)], daemon=True)
        writer.start()
        writer.join(2)
        assert writer.is_alive()  # blocked on the full pipe, as the telemetry thread would be
        closer = threading.Thread(target=exporter.shutdown, args=(1.0,), daemon=True)
        closer.start()
        closer.join(15)
        assert not closer.is_alive()
        exporter.spool_now([frame(request_row(7))])
        entry = exporter.spool.claim_oldest()
        assert entry is not None and len(decode(entry.read())) == 2  # the request and its model data
    finally:
        os.kill(stuck.pid, signal.SIGKILL)
        os.kill(stuck.pid, signal.SIGCONT)
        writer.join(30)  # unblocked: the rest goes to a restarted exporter process
        stuck.wait()
        exporter.shutdown(10)


def test_the_exporter_process_gives_the_cpu_away_between_rows_of_a_long_batch(monkeypatch, native):
    # A niced process that wakes and works for ms holds a protected time slice; the scoring worker
    # waits for it unless the exporter process yields (see sidecar.Courtesy). Its clock is a counter
    # here, so the test counts yields, not time.
    from scorewatch.telemetry import sidecar

    yields: list[float] = []
    monkeypatch.setattr(sidecar.os, "sched_yield", lambda: yields.append(now[0]))
    now = [0.0]
    pause = sidecar.Courtesy(every_s=1.0, clock=lambda: now[0])  # in units of "a while of work"
    calls = []

    def slow_pause() -> None:
        calls.append(1)
        now[0] += 0.25  # a quarter of that per ROWS_PER_PAUSE rows
        pause()

    envelopes = templates(native).build(frame(*[request_row(i) for i in range(200)]), slow_pause)
    # one pause per ROWS_PER_PAUSE rows (and one after the last), envelopes unchanged
    assert len(envelopes) == 400 and len(calls) == -(-200 // ROWS_PER_PAUSE) == 13
    assert yields == [1.0, 2.0, 3.0]  # one yield each time that while of work has passed
    sidecar.Courtesy(every_s=1.0, clock=lambda: now[0])()  # no work since it was made: no system call
    assert len(yields) == 3


def test_frames_reach_the_pipe_whole_and_in_order_even_when_writes_are_partial(monkeypatch):
    from scorewatch.telemetry import sidecar

    real_writev = os.writev
    monkeypatch.setattr(sidecar.os, "writev", lambda fd, buffers: real_writev(fd, [b"".join(buffers)[:7]]))
    read_end, write_end = os.pipe()
    try:
        buffers = [b"header", b"", b"x" * 20, b"tail"]
        sidecar._write_all(write_end, list(buffers))
        assert os.read(read_end, 100) == b"".join(buffers)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_reader_takes_row_frames_and_messages_split_across_reads():
    import io
    import marshal
    import pickle

    from scorewatch.telemetry import sidecar

    batch = [rows.make_newline(rows.STDOUT, 1), rows.make_newline(rows.STDERR, 2)]
    frame = marshal.dumps(batch)
    message = pickle.dumps((rows.MESSAGE_FLUSH, 7, 1.0))
    data = (sidecar._HEADER.pack(rows.PIPE_ROWS, len(frame)) + frame
            + sidecar._HEADER.pack(rows.PIPE_MESSAGE, len(message)) + message)

    class Trickle(io.RawIOBase):  # a pipe that hands over 5 bytes at a time
        def __init__(self) -> None:
            self.data = data

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            n = min(5, len(self.data))
            buffer[:n], self.data = self.data[:n], self.data[n:]
            return n

    reader = sidecar._FrameReader(Trickle())
    messages = []
    while (got := reader.read()) is not None:
        messages += got
    assert messages == [(rows.MESSAGE_ROWS, batch), (rows.MESSAGE_FLUSH, 7, 1.0)] and not reader.buffer
