"""Project-level promises: the README's commands and what CI runs stay in step."""

from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text().splitlines()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in readme[:10] if line.startswith("python3 -m venv")]
    assert len(commands) == 2, "the README must open with the two set-up commands"
    assert "attnbench run --profile quick" in commands[0]
    assert commands[1] in ci, "the test command in .ci/run differs from the README's"
    assert '"$rc" -eq 5' in ci, "pytest's 'no tests' exit code must fail CI loudly"
