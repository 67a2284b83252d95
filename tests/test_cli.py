"""The CLI front door: help lists every command; errors become a message and an exit code."""

import subprocess
import sys

from click.testing import CliRunner

from scorewatch.cli import COMMANDS, cli


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_unknown_command_exits_non_zero_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "scorewatch", "no-such-command"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "no-such-command" in proc.stderr
