"""The embedded servers of one data dir, shared by every meterbridge process using it.

Any command that needs the database or the broker *attaches*: under a file lock it
starts whichever embedded server is not running, records its own pid among the users,
and (for the database) brings the schema up to date. When it exits it *detaches*; the
last live user stops the servers. A user that died without detaching (SIGKILL) is
pruned by the next one to take the lock, so servers it left running are adopted, then
stopped in turn.

    <data dir>/postgres/     the cluster            <data dir>/run/servers.lock
    <data dir>/redis/        append-only queue      <data dir>/run/users.json
    <socket dir>/.s.PGSQL.5432, redis.sock          (``Settings.socket_dir``)
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from domain.db import make_engine
from domain.schema import current_revision, head_revision, upgrade
from domain.settings import EMBEDDED_DATABASE, REDIS_SOCKET_NAME, Settings
from workers.embedded.postgres import EmbeddedPostgres, EmbeddedServerError
from workers.embedded.process import alive
from workers.embedded.redis import EmbeddedRedis
from workers.embedded.system_user import server_user


class EmbeddedServers:
    def __init__(self, settings: Settings) -> None:
        data_dir = settings.data_dir.resolve()
        self.settings = settings
        self.state_dir = data_dir / "run"
        self.postgres = (
            EmbeddedPostgres(data_dir / "postgres" / "data", settings.socket_dir)
            if settings.embedded_database
            else None
        )
        self.redis = (
            EmbeddedRedis(data_dir / "redis", settings.socket_dir / REDIS_SOCKET_NAME)
            if settings.embedded_redis  # the broker, or the store of the rate limits
            else None
        )

    @property
    def needed(self) -> bool:
        return self.postgres is not None or self.redis is not None

    def attach(self, pid: int) -> list[str]:
        """Start what is not running; ``pid`` becomes a user. Returns what it started."""
        with self._locked():
            _refuse_a_foreign_socket_dir(self.settings.socket_dir)
            started = []
            if self.postgres is not None and not self.postgres.running():
                self.postgres.start()
                started.append("postgres")
            if self.redis is not None and not self.redis.running():
                self.redis.start()
                started.append("redis")
            if self.postgres is not None:
                # every time, not only after a start: a crash between initdb and here must
                # not leave a cluster without its database
                self.postgres.create_database(EMBEDDED_DATABASE)
                _migrate(self.settings)
            self._write_users({*self._live_users(), pid})
            return started

    def detach(self, pid: int) -> bool:
        """``pid`` stops using the servers; the last live user stops them. Returns whether
        it did."""
        with self._locked():
            users = self._live_users() - {pid}
            self._write_users(users)
            if users:
                return False
            self.stop()
            return True

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def users(self) -> set[int]:
        with self._locked():
            return self._live_users()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.state_dir / "servers.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _live_users(self) -> set[int]:
        try:
            pids = json.loads((self.state_dir / "users.json").read_text())
        except (OSError, ValueError):
            return set()
        return {pid for pid in pids if isinstance(pid, int) and alive(pid)}

    def _write_users(self, pids: set[int]) -> None:
        path = self.state_dir / "users.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(sorted(pids)))
        temporary.replace(path)


def _refuse_a_foreign_socket_dir(path: Path) -> None:
    """The socket dir may be a fixed name in /tmp (for a data dir too deep for a socket
    path): one that another user made first could serve them our sockets."""
    try:
        owner = path.stat().st_uid
    except FileNotFoundError:
        return
    if owner not in {os.geteuid(), server_user().uid}:
        raise EmbeddedServerError(
            f"{path} belongs to another user (uid {owner}); remove it, or use a shorter "
            "METERBRIDGE_DATA_DIR"
        )


def _migrate(settings: Settings) -> None:
    """The embedded database is meterbridge's own, so it is kept at the code's schema
    (a server database is migrated by `meterbridge migrate`, once per release)."""
    engine = make_engine(settings)
    try:
        if current_revision(engine) != head_revision(engine):
            upgrade(engine)
    finally:
        engine.dispose()


_attached: tuple[int, EmbeddedServers] | None = None


def attach_process(settings: Settings) -> list[str]:
    """Attach this process to the embedded servers of ``settings`` for the rest of its
    life (once; a no-op when nothing is embedded). Returns the servers it started."""
    global _attached
    if _attached is not None and _attached[0] == os.getpid():
        return []
    servers = EmbeddedServers(settings)
    if not servers.needed:
        return []
    pid = os.getpid()
    started = servers.attach(pid)
    _attached = (pid, servers)
    atexit.register(_detach_at_exit, pid, servers)
    return started


def detach_process() -> bool:
    """Detach now (``dev`` does, to report it); returns whether the servers were stopped."""
    global _attached
    if _attached is None or _attached[0] != os.getpid():
        return False
    pid, servers = _attached
    _attached = None
    return servers.detach(pid)


def _detach_at_exit(pid: int, servers: EmbeddedServers) -> None:
    # A forked child (a Celery pool process) inherits the hook but is not the user.
    if os.getpid() == pid and _attached is not None:
        detach_process()
