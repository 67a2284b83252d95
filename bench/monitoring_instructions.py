"""What monitoring costs a scoring worker, in instructions: a measure no noisy neighbour disturbs.

``bench/monitoring_overhead.py`` measures throughput, which on a shared machine moves by several
percent from one run to the next. This runs the same service (its score.py, body and settings) under
``valgrind --tool=callgrind``, which counts the instructions each process executes, whatever else the
machine does. Each configuration (monitoring off: no connection string; switched off: a connection
string, started with ``--no-app-insights``, as a deployment with App Insights off runs; full
monitoring on) runs twice, with ``--base`` and
with ``--base + --requests`` sequential requests; the difference divided by ``--requests`` is the cost
of one request, start-up and shut-down cancelled out. With monitoring on, the exporter process
(traced too) is counted apart: the worker's count is what decides a CPU-bound worker's throughput,
the exporter's is what monitoring costs the machine besides.

    python bench/monitoring_instructions.py [--requests 2000]

Needs ``valgrind`` (apt). OpenBLAS's threads are held to one (``OPENBLAS_NUM_THREADS=1``): its idle
threads spin for a while after each call, which counts as instructions in proportion to wall time.
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.monitoring_overhead import BODY, IKEY, SCORE_PY, Proc  # noqa: E402
from tests.helpers import free_port, wait_for_http  # noqa: E402


def instructions(out_file: Path) -> int:
    match = re.search(r"^(?:summary|totals): (\d+)", out_file.read_text(errors="replace"), re.M)
    return int(match.group(1)) if match else 0


def run(work: Path, name: str, monitoring: str, requests: int, receiver_port: int) -> dict[str, int]:
    """Instructions of the worker and of the rest of its processes, for one run of ``requests`` calls."""
    out_dir = work / f"{name.replace(' ', '-')}-{requests}"
    out_dir.mkdir()
    port = free_port()
    cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out_dir}/cg.%p",
           sys.executable, "-m", "scorewatch", "serve", str(work / "svc" / "score.py"), "--port", str(port),
           "--workers", "1", "--home", str(work / "ws")]
    if monitoring != "off":
        cmd += ["--connection-string", f"InstrumentationKey={IKEY};IngestionEndpoint=http://127.0.0.1:{receiver_port}"]
    if monitoring == "switched off":
        cmd += ["--no-app-insights"]
    server = Proc(cmd, {"SCOREWATCH_COLLECT_MODEL_DATA": "true", "OPENBLAS_NUM_THREADS": "1"}, work,
                  out_dir / "server.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", timeout=600, proc=server.proc)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(requests):
            connection.request("POST", "/score", body=BODY, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status
        connection.close()
        time.sleep(1.0)
    finally:
        server.stop()
    counts = {int(path.name.split(".")[1]): instructions(path) for path in out_dir.glob("cg.*")}
    worker = counts.pop(server.proc.pid)
    return {"worker": worker, "others": sum(counts.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests counted (the difference of two runs)")
    parser.add_argument("--base", type=int, default=200, help="requests of the shorter run")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed: apt-get install -y valgrind")
    work = Path(tempfile.mkdtemp(prefix="scorewatch-instructions-"))
    (work / "svc").mkdir()
    (work / "svc" / "score.py").write_text(textwrap.dedent(SCORE_PY))
    receiver_port = free_port()
    receiver = Proc([sys.executable, str(ROOT / "bench" / "monitoring_overhead.py"), "--receiver",
                     str(receiver_port)], {}, work, work / "receiver.log")
    wait_for_http(f"http://127.0.0.1:{receiver_port}/count", proc=receiver.proc)
    per_request: dict[str, dict[str, float]] = {}
    try:
        for name, monitoring in (("off", "off"), ("switched off", "switched off"), ("on", "on")):
            short = run(work, name, monitoring, args.base, receiver_port)
            long = run(work, name, monitoring, args.base + args.requests, receiver_port)
            per_request[name] = {part: (long[part] - short[part]) / args.requests for part in short}
            print(f"monitoring {name:12s}  worker {per_request[name]['worker']:9,.0f} instructions/request  "
                  f"exporter process {per_request[name]['others']:9,.0f}", flush=True)
    finally:
        receiver.stop()
    off, on = per_request["off"]["worker"], per_request["on"]["worker"]
    exporter = per_request["on"]["others"]
    switched_off = per_request["switched off"]["worker"]
    print()
    print(f"started switched off, the worker executes {switched_off - off:+,.0f} instructions per request against "
          f"no monitor at all ({switched_off / off - 1:+.2%})")
    print(f"the worker executes {on - off:+,.0f} instructions per request with full monitoring "
          f"({on / off - 1:+.1%}): a CPU-bound worker keeps {off / on:.1%}")
    print(f"with the exporter process: {on + exporter - off:+,.0f} ({(on + exporter) / off - 1:+.1%}); "
          f"all on one CPU, a worker would keep {off / (on + exporter):.1%}")


if __name__ == "__main__":
    main()
