"""The README says what the code does: its configuration table and its test command."""

from __future__ import annotations

import re
from pathlib import Path

from domain.settings import Settings, env_name

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_every_setting_is_documented_and_nothing_else() -> None:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(METERBRIDGE_[A-Z_]+)`", section, flags=re.MULTILINE))
    assert documented == {env_name(field) for field in Settings.model_fields}


def test_ci_runs_the_readme_test_command() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.+?)\n```", quickstart)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (REPO / ".ci" / "run").read_text()
    assert any(c.endswith("meterbridge dev") for c in commands)
