"""Alembic environment. Migrations run inside `Store.open`, on the connection it passes in
`config.attributes["connection"]`, with a transaction already begun (holding SQLite's write
lock), so the whole upgrade commits or rolls back at once.

A new revision is written by hand (batch mode for SQLite, numbered after the last one) next to
the change in store/tables.py; tests/test_store_migrations.py prints any difference between
head and the tables.
"""

from alembic import context
from sqlmodel import SQLModel

import store.tables  # noqa: F401  (puts the tables on SQLModel.metadata)

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=SQLModel.metadata,
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
