"""Settings: typed, read from the environment with Azure's aliases, and every one documented."""

from pathlib import Path

import pytest

from scorewatch.errors import ConfigError
from scorewatch.settings import Settings, describe

DOCS = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_every_setting_is_documented():
    text = DOCS.read_text()
    missing = [name for name, *_ in describe() if f"`{name}`" not in text]
    assert missing == [], f"undocumented settings in docs/settings.md: {missing}"


def test_environment_and_azure_aliases():
    s = Settings.from_env({"SCOREWATCH_PORT": "6000", "WORKER_COUNT": "3", "SCORING_TIMEOUT_MS": "250",
                           "SCOREWATCH_COLLECT_MODEL_DATA": "off"})
    assert (s.port, s.workers, s.scoring_timeout_ms, s.collect_model_data) == (6000, 3, 250, False)


def test_prefixed_name_wins_over_alias_and_overrides_win_over_env():
    s = Settings.from_env({"SCOREWATCH_WORKERS": "2", "WORKER_COUNT": "5"}, port=7000, host=None)
    assert (s.workers, s.port, s.host) == (2, 7000, "127.0.0.1")


def test_bad_value_is_a_clear_error():
    with pytest.raises(ConfigError, match="SCOREWATCH_PORT"):
        Settings.from_env({"SCOREWATCH_PORT": "eighty"})
