import os
import time


def init():
    time.sleep(float(os.environ.get("TEST_INIT_SECONDS", "0")))
    raise RuntimeError("model file is corrupt")


def run(raw_data):
    return raw_data
