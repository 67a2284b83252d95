"""The repository's promises: README opens with the two commands, and CI runs the README's test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands(readme: str) -> list[str]:
    blocks = readme.split("```bash\n")[1:]
    return [block.split("```")[0].strip() for block in blocks]


def test_readme_opens_with_run_and_test_commands():
    commands = _commands((ROOT / "README.md").read_text())
    assert "scorewatch up" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_exactly_the_readme_test_command():
    test_command = _commands((ROOT / "README.md").read_text())[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines
