"""Scoring throughput: ``scorewatch serve`` against Azure's ``azureml-inference-server-http``.

One run, one machine, the same trivial score.py, one worker each, bound to 127.0.0.1, the same wrk
load (POST /score with a small JSON body). Each server is measured ``--rounds`` times, interleaved
(scorewatch, azure, scorewatch, azure, ...), and the better round of each counts, so a noisy neighbour
on a shared machine does not decide the ratio. Monitoring is off on both. Target: scorewatch >= 5x.

    python bench/serve.py [--seconds 8] [--connections 16] [--rounds 2]

Needs ``wrk`` (``apt-get install -y wrk``) and ``bench/.venv-azureml`` (created here with pip when
missing; it holds ``azureml-inference-server-http``, whose Flask/gunicorn stack must not mix with ours).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.helpers import ServerProcess, free_port, wait_for_http  # noqa: E402

AZURE_VENV = ROOT / "bench" / ".venv-azureml"

SCORE_PY = textwrap.dedent('''
    import json


    def init():
        global offset
        offset = 1.0


    def run(raw_data):
        data = json.loads(raw_data)["data"]
        return {"sum": sum(data) + offset}
''')
BODY = '{"data": [1.5, 2.5, 3.0, 4.0]}'

# azmlinfsrv always binds 0.0.0.0; this runs its own entry point with the host constant set to loopback.
AZURE_LAUNCHER = ("import sys, azureml_inference_server_http.amlserver as s; s.DEFAULT_HOST = '127.0.0.1'; "
                  "sys.argv[0] = 'azmlinfsrv'; s.run()")


def ensure_azure_venv() -> Path:
    python = AZURE_VENV / "bin" / "python"
    probe = [str(python), "-c", "import azureml_inference_server_http"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {AZURE_VENV} with azureml-inference-server-http ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(AZURE_VENV)], check=True)
    # numpy: the benchmarks' score.py files use it.
    subprocess.run([str(python), "-m", "pip", "install", "-q", "azureml-inference-server-http", "numpy"], check=True)
    return python


def azure_version(python: Path) -> str:
    out = subprocess.run([str(python), "-m", "pip", "show", "azureml-inference-server-http"],
                         capture_output=True, text=True).stdout
    match = re.search(r"^Version: (\S+)", out, re.M)
    return match.group(1) if match else "?"


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, seconds: int, connections: int, script: Path, cpus: str | None = None) -> dict[str, float]:
    """One wrk run (one thread); ``cpus``: a ``taskset`` CPU list to keep the load generator on."""
    pin = ["taskset", "-c", cpus] if cpus else []
    out = subprocess.run([*pin, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          url], capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        result[f"p{pct}"] = _ms(re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = float(non_2xx.group(1)) if non_2xx else 0.0
    return result


def measure(command: list[str], env: dict[str, str], port: int, work: Path, seconds: int, connections: int,
            script: Path) -> dict[str, float]:
    server = ServerProcess([], log_dir=work, env=env, cwd=work / "svc")
    server.args = command
    server.start()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", timeout=120, proc=server.proc)
        url = f"http://127.0.0.1:{port}/score"
        wrk(url, 2, connections, script)  # warm-up
        return wrk(url, seconds, connections, script)
    except Exception:
        print(server.output())
        raise
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    azure_python = ensure_azure_venv()
    work = Path(tempfile.mkdtemp(prefix="scorewatch-bench-serve-"))
    (work / "svc").mkdir()
    (work / "svc" / "score.py").write_text(SCORE_PY)
    script = work / "post.lua"
    script.write_text(f"wrk.method = \"POST\"\nwrk.body = '{BODY}'\n"
                      'wrk.headers["Content-Type"] = "application/json"\n')

    def scorewatch() -> tuple[list[str], dict[str, str], int]:
        port = free_port()
        return ([sys.executable, "-m", "scorewatch", "serve", str(work / "svc" / "score.py"), "--port", str(port),
                 "--workers", "1"], {"SCOREWATCH_HOME": str(work / "home"), "APPLICATIONINSIGHTS_CONNECTION_STRING": ""},
                port)

    def azure() -> tuple[list[str], dict[str, str], int]:
        port = free_port()
        return ([str(azure_python), "-c", AZURE_LAUNCHER, "--entry_script", str(work / "svc" / "score.py"),
                 "--port", str(port), "--worker_count", "1"], {"APPLICATIONINSIGHTS_CONNECTION_STRING": ""}, port)

    best: dict[str, dict[str, float]] = {}
    for round_number in range(1, args.rounds + 1):
        for name, launch in (("scorewatch", scorewatch), ("azure", azure)):
            command, env, port = launch()
            result = measure(command, env, port, work, args.seconds, args.connections, script)
            print(f"round {round_number} {name:<10} {result['rps']:>9.0f} req/s  p50 {result['p50']:.2f} ms  "
                  f"p99 {result['p99']:.2f} ms  non-2xx {result['errors']:.0f}", flush=True)
            if name not in best or result["rps"] > best[name]["rps"]:
                best[name] = result
    shutil.rmtree(work, ignore_errors=True)

    labels = {"scorewatch": "scorewatch serve (uvicorn+Starlette)",
              "azure": f"azureml-inference-server-http {azure_version(azure_python)}"}
    print()
    print(f"same score.py, 1 worker each, wrk -t1 -c{args.connections} -d{args.seconds}s, best of {args.rounds}")
    print(f"{'server':<44}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name in ("scorewatch", "azure"):
        r = best[name]
        print(f"{labels[name]:<44}{r['rps']:>10.0f}{r['p50']:>10.2f}{r['p99']:>10.2f}")
    ratio = best["scorewatch"]["rps"] / best["azure"]["rps"]
    verdict = "meets" if ratio >= 5 else "MISSES"
    print(f"throughput ratio scorewatch/azure: {ratio:.1f}x ({verdict} the >= 5x target)")


if __name__ == "__main__":
    main()
