"""PostgreSQL adapter (SQLAlchemy Core + psycopg 3)."""

from migrationkit.adapters.postgres.cursors import CursorStore
from migrationkit.adapters.postgres.database_url import normalize_database_url, safe_url
from migrationkit.adapters.postgres.dead_letters import DeadLetter, DeadLetterStore
from migrationkit.adapters.postgres.engine import make_engine, workspace_transaction
from migrationkit.adapters.postgres.outbox_source import LeaseLost, OutboxClaim, PgOutboxSource
from migrationkit.adapters.postgres.repository import PostgresLeadRepository, PostgresRepository

__all__ = [
    "CursorStore",
    "DeadLetter",
    "DeadLetterStore",
    "LeaseLost",
    "OutboxClaim",
    "PgOutboxSource",
    "PostgresLeadRepository",
    "PostgresRepository",
    "make_engine",
    "normalize_database_url",
    "safe_url",
    "workspace_transaction",
]
