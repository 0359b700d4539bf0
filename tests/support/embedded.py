"""Looking at the embedded servers of a data dir from outside, as a user would."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.environment import REPO
from tests.support.processes import CLI


def clean_env(data_dir: Path) -> dict[str, str]:
    """A fresh machine's environment: no METERBRIDGE_* but the data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERBRIDGE_")}
    env.update(METERBRIDGE_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def processes_using(data_dir: Path) -> list[str]:
    """Command lines of live processes that name the data dir (its PostgreSQL and Redis
    do: ``postgres -D <dir>/postgres/data``, ``redis-server unixsocket:<dir>/run/…``)."""
    found = []
    needle = str(data_dir.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if needle in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def session_members(leader: int) -> list[int]:
    """Live processes in the session ``leader`` started (dev and its children)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().split(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == leader and fields[0] != "Z":  # fields[3]: session id
                members.append(int(entry.name))
    return members

