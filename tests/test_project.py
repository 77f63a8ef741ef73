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


def test_every_package_folder_is_listed_for_the_wheel():
    """pyproject lists packages by hand (attnbench_plugins lives in plugins/); a folder missing from
    the list is absent from the wheel a user installs, though an editable checkout still imports it."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name: ROOT / path for name, path in setuptools["package-dir"].items()}
    found = {
        ".".join((top, *init.parent.relative_to(root).parts))
        for top, root in folders.items() for init in root.rglob("__init__.py")
        if "build" not in init.parts
    }
    assert found - set(setuptools["packages"]) == set(), "add these to [tool.setuptools] packages in pyproject.toml"
