"""Embedded PostgreSQL and Redis: the production stack, shipped as wheels, run under the
data dir when no database or broker URL is given."""

from workers.embedded.postgres import EmbeddedPostgres, EmbeddedServerError
from workers.embedded.redis import EmbeddedRedis
from workers.embedded.servers import EmbeddedServers, attach_process, detach_process

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedServerError",
    "EmbeddedServers",
    "attach_process",
    "detach_process",
]
