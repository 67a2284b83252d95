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


def test_ci_proves_the_readme_first_command_before_the_tests():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    test_command = _commands((ROOT / "README.md").read_text())[1]
    assert "python3 .ci/smoke_up.py" in ci_lines
    assert ci_lines.index("python3 .ci/smoke_up.py") < ci_lines.index(test_command)
    assert [line for line in ci_lines if line and not line.startswith("#")][-1] == test_command  # last


def test_the_smoke_runs_what_the_readme_says():
    import importlib.util

    spec = importlib.util.spec_from_file_location("smoke_up", ROOT / ".ci" / "smoke_up.py")
    assert spec is not None and spec.loader is not None
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    pip, up = smoke.readme_first_command((ROOT / "README.md").read_text())
    assert pip == ["-e", ".[examples]"] and up == []  # the default example, from wherever the user is
    assert smoke._checkout_paths(pip) == ["-e", f"{ROOT}[examples]"]
