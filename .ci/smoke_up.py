"""The README's first command, proven as a new user meets it (run by .ci/run; standard library only).

The test suite installs the test extras, so it cannot see what a user who installs only the README's
first command gets. This script takes that command from README.md and runs it in a fresh virtual
environment (the runtime dependencies plus the extras the command names, nothing else), from a
directory outside the checkout, with free ports: `scorewatch up` starts, the body of the `curl` it
prints is scored once, the request is queried back with `scorewatch query`, Ctrl-C (SIGINT) stops it,
and it must exit 0. Any step that fails ends this script non-zero, with the output of `up`.

    python3 .ci/smoke_up.py [--venv DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_first_command(readme: str) -> tuple[list[str], list[str]]:
    """(the pip install arguments, the `scorewatch up` arguments) of the README's first bash block."""
    command = readme.split("```bash\n", 1)[1].split("```", 1)[0].strip()
    pip = up = None
    for part in (p.strip() for p in command.split("&&")):
        words = shlex.split(part)
        if len(words) > 2 and words[0].endswith("/pip") and words[1] == "install":
            pip = words[2:]
        elif words and words[0].endswith("/scorewatch") and words[1:2] == ["up"]:
            up = words[2:]
    if pip is None or up is None:
        raise SystemExit(f"README's first command has no pip install and scorewatch up: {command!r}")
    return pip, up


def _checkout_paths(args: list[str]) -> list[str]:
    """`.` and `.[extra]` in the README's pip command mean the checkout: make them its absolute path."""
    return [str(ROOT) + arg[1:] if arg == "." or arg.startswith(".[") else arg for arg in args]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _step(text: str) -> None:
    print(f"smoke: {text}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, help="virtual environment to make (default: a new temporary one)")
    options = parser.parse_args()
    pip_args, up_args = readme_first_command((ROOT / "README.md").read_text())
    work = Path(tempfile.mkdtemp(prefix="scorewatch-smoke-"))
    venv = options.venv or work / "venv"
    outside = work / "project"  # the user's own directory, not the checkout
    outside.mkdir()
    shutil.rmtree(venv, ignore_errors=True)

    _step(f"python3 -m venv {venv}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = [str(venv / "bin" / "pip"), "install", "--quiet", *_checkout_paths(pip_args)]
    _step(" ".join(shlex.quote(a) for a in install))
    subprocess.run(install, check=True)
    scorewatch = str(venv / "bin" / "scorewatch")
    env = {k: v for k, v in os.environ.items() if k != "SCOREWATCH_HOME" and not k.startswith("PYTHON")}
    hub_port, port = _free_port(), _free_port()
    command = [scorewatch, "up", *up_args, "--hub-port", str(hub_port), "--port", str(port)]
    _step(f"cd {outside} && {' '.join(command)}")
    log = work / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen(command, cwd=outside, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while "Ctrl-C stops both" not in log.read_text(errors="replace"):
            if up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`scorewatch up` did not come up (exit {up.poll()})")
            time.sleep(0.2)
        curl = shlex.split(next(line for line in log.read_text().splitlines() if "curl -X POST" in line)
                           .split("try it", 1)[1])
        url = next(word for word in curl if word.startswith("http"))
        body = curl[curl.index("-d") + 1]
        headers = dict(h.split(": ", 1) for h in (curl[i + 1] for i, w in enumerate(curl) if w == "-H"))
        _step(f"POST {url} {body}")
        request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - our own service
            answer = response.read().decode()
        if response.status != 200 or not re.fullmatch(r"\[[-0-9.e]+\]", answer):
            raise RuntimeError(f"the scoring service answered {response.status} {answer!r}")
        _step(f"answered {answer}")
        query = [scorewatch, "query", "requests | where url endswith '/score' | count", "--format", "csv"]
        _step(f"cd {outside} && {' '.join(shlex.quote(a) for a in query)}")
        for _ in range(150):  # the service's exporter sends about once a second
            result = subprocess.run(query, cwd=outside, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"`scorewatch query` failed: {result.stderr}")
            if result.stdout.split() == ["Count", "1"]:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the request never reached the hub: {result.stdout!r}")
        _step("queried the request back: Count 1")
        print(subprocess.run([scorewatch, "query", "requests | take 10"], cwd=outside, env=env,
                             capture_output=True, text=True).stdout, flush=True)
        _step("Ctrl-C (SIGINT)")
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=120)
        if code != 0:
            raise RuntimeError(f"`scorewatch up` exited with {code} after Ctrl-C")
    except Exception as exc:
        print(f"smoke: FAILED: {exc}\n--- output of scorewatch up ---\n{log.read_text(errors='replace')}",
              file=sys.stderr, flush=True)
        if up.poll() is None:  # stop it as a user would, so it stops its children too
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
        return 1
    _step("passed: the README's first command works on a fresh install, from outside the checkout")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
