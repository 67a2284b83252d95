# Written in the style of Azure ML's raw-input samples: run() gets the body as a str.
import json
import logging
import os
import threading
import time

from scorewatch.telemetry.context import current_operation

active = 0
most = 0
lock = threading.Lock()


def init():
    global factor, neighbour
    factor = 2
    # Scripts read files next to themselves: the script's folder is the working directory.
    with open("neighbour.txt") as fh:
        neighbour = fh.read().strip()
    print("init done")


def run(raw_data, request_headers):
    global active, most
    try:
        data = json.loads(raw_data)
    except Exception as e:
        return str(e)  # the classic pattern: the error string comes back with status 200
    if isinstance(data, dict) and "raw" in data:
        return {"raw": raw_data}
    if not isinstance(data, dict) or "echo" in data:
        return {"got": data}
    action = data.get("action")
    time.sleep(data.get("sleep_first", 0))
    if action == "fail":
        raise ValueError("secret internal detail")
    if action == "headers":
        return {"headers": request_headers}
    if action == "operation":
        op = current_operation.get()
        return {"operation_id": op.operation_id, "request_id": op.request_id}
    if action == "env":
        return {k: os.environ.get(k) for k in ("AZUREML_MODEL_DIR", "AML_APP_ROOT", "SERVICE_NAME")} | {
            "cwd": os.getcwd(), "neighbour": neighbour}
    if action == "sleep":
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(data["seconds"])
        with lock:
            active -= 1
        return {"slept": data["seconds"], "most_concurrent": most}
    if action == "numpy":
        import numpy as np
        return np.arange(3) * factor
    if action == "log":
        logging.getLogger("user").warning("user log line")
    return {"result": [x * factor for x in data.get("data", [])]}
