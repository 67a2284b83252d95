import pytest

from tests.telemetry.receiver import Receiver


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r
