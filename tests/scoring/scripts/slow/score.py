import json
import os
import time


def init():
    time.sleep(float(os.environ.get("TEST_INIT_SECONDS", "0")))


def run(raw_data):
    seconds = json.loads(raw_data).get("sleep", 0)
    time.sleep(seconds)
    return {"slept": seconds, "pid": os.getpid()}
