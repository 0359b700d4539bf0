"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from domain.schema import current_revision, head_revision
from domain.tables import metadata
from tests.support import handlers
from tests.support.environment import Environment

TEST_TABLES = set(handlers.metadata.tables)


def test_migrations_match_the_models(env: Environment) -> None:
    assert current_revision(env.engine) == head_revision(env.engine)
    with env.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_name": lambda name, kind, _parent: (
                    not (kind == "table" and name in TEST_TABLES)
                )
            },
        )
        differences = compare_metadata(context, metadata)
    assert differences == []
