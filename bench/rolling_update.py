"""Deployments under load: failed requests during rolling updates, switch and restart times.

Starts a hub in a fresh workspace and deploys a trivial service through the control API, then:

1. load alone (``--clients`` threads, half keeping their connections alive, half not) for
   ``--seconds``: the baseline rate;
2. the same load during ``--rolls`` rolling updates (worker count 2 <-> 1, each a new process on the
   same socket while the old one drains): requests sent, failed (any answer but 200, any error) and
   refused (connection refused), the rate against the baseline, and how long each roll took;
3. ``--switches`` runtime switches of ``enable_app_insights`` (no restart): the time from the update
   call to every worker having applied it (the API call returns once every worker acknowledged);
4. ``--crashes`` SIGKILLs of the serving process in a row: the time to ``Healthy`` again after each
   (crashes in a row wait 0.5, 1, 2, ... s before the restart, as ``service_restart_backoff_s`` says;
   the first is what a service that crashes once meets).

    python bench/rolling_update.py [--rolls 10] [--clients 8] [--switches 10] [--crashes 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.deploy.conftest import make_app, register, running_hub  # noqa: E402
from tests.helpers import Load  # noqa: E402

SCORE_PY = "import os\n\n\ndef init():\n    pass\n\n\ndef run(raw):\n    return {'pid': os.getpid()}\n"


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):.3f}s, min {min(values):.3f}s, max {max(values):.3f}s "
            f"({len(values)} times)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rolls", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the baseline load")
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--crashes", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scorewatch-rolling-"))
    folder = work / "app"
    _, model_file = make_app(folder, SCORE_PY)
    # (crashes in a row would make it Failed after service_max_restarts: not what is measured here)
    with running_hub(work / "ws", work, env={"SCOREWATCH_SERVICE_RESTART_BACKOFF_S": "0.5",
                                              "SCOREWATCH_SERVICE_MAX_RESTARTS": "1000"}) as hub:
        record = register(hub, model_file)
        hub.api.request("POST", "/v1/services", {"spec": {
            "name": "bench", "entry_script": str(folder / "score.py"), "source_directory": str(folder),
            "models": [{"name": record["name"], "version": record["version"]}], "replicas": 2,
            "enable_app_insights": False}})
        url = hub.healthy("bench")["scoring_uri"]

        with Load(url, clients=args.clients) as load:
            started = time.monotonic()
            time.sleep(args.seconds)
            baseline = load.sent / (time.monotonic() - started)
        print(f"baseline: {baseline:,.0f} requests/s with {args.clients} clients, {len(load.failures)} failed")

        took = []
        with Load(url, clients=args.clients) as load:
            started = time.monotonic()
            for roll in range(args.rolls):
                load.wait_for(200)
                begun = time.monotonic()
                hub.api.request("PATCH", "/v1/services/bench", {"replicas": 1 if roll % 2 == 0 else 2})
                hub.healthy("bench")
                took.append(time.monotonic() - begun)
            load.wait_for(200)
            elapsed = time.monotonic() - started
        refused = [f for f in load.failures if "ConnectError" in f]
        print(f"{args.rolls} rolling updates under load: {load.sent} requests sent, {len(load.failures)} failed, "
              f"{len(refused)} refused; {load.sent / elapsed:,.0f} requests/s ({load.sent / elapsed / baseline:.0%} "
              "of the baseline)")
        print(f"  each roll, from the update to Healthy on the new process: {summary(took)}")
        for failure in load.failures[:5]:
            print(f"  failure: {failure}")

        switched = []
        for i in range(args.switches):
            begun = time.monotonic()
            view = hub.api.request("PATCH", "/v1/services/bench", {"enable_app_insights": i % 2 == 0})
            switched.append(time.monotonic() - begun)
            acks = view["telemetry"]["workers"]
            assert acks and all(r == view["telemetry"]["revision"] for r in acks.values()), view["telemetry"]
        print(f"update(enable_app_insights=...) to every worker switched ({len(acks)} workers): {summary(switched)}")

        for crash in range(1, args.crashes + 1):
            pid = hub.healthy("bench")["status"]["pid"]
            os.kill(pid, signal.SIGKILL)
            begun = time.monotonic()
            hub.wait("bench", lambda v, pid=pid: v["state"] == "Healthy" and v["status"]["pid"] != pid)
            backoff = 0.5 * 2 ** (crash - 1)
            print(f"crash {crash} in a row (SIGKILL) to Healthy: {time.monotonic() - begun:.3f}s "
                  f"(of which {backoff:g}s of backoff)")


if __name__ == "__main__":
    main()
