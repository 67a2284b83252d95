import os
import stat

import pytest

from scorewatch.errors import ConfigError
from scorewatch.workspace import Workspace


def test_config_is_private_and_round_trips(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    ws.update_config(hub_url="http://127.0.0.1:8400", default_app={"api_key": "k"})
    assert stat.S_IMODE(os.stat(ws.config_path).st_mode) == 0o600
    assert ws.read_config()["default_app"] == {"api_key": "k"}


def test_corrupt_config_is_a_clear_error(tmp_path):
    ws = Workspace(tmp_path).ensure()
    ws.config_path.write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        ws.read_config()
