"""The table generated from a model: the one description of the schema."""

from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

import pytest
from sqlalchemy import BigInteger, Boolean, Double, MetaData, Text
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

from migrationkit.domain import Entity, IndexSpec, Lead
from migrationkit.schema import build_metadata, snake_case, table_for, tenant_tables


def test_lead_table_columns_follow_the_model() -> None:
    table = table_for(Lead, MetaData())
    kinds = {c.name: (type(c.type), c.nullable) for c in table.columns}
    assert kinds == {
        "id": (Text, False),
        "workspace_id": (Text, False),
        "version": (BigInteger, False),
        "created_at": (TIMESTAMP, False),
        "updated_at": (TIMESTAMP, False),
        "deleted_at": (TIMESTAMP, True),
        "email": (Text, False),
        "segment": (Text, True),
        "score": (Double, False),
        "tags": (JSONB, False),
        "profile": (JSONB, True),
        "convex_id": (Text, True),
    }
    assert all(c.type.timezone for c in table.columns if isinstance(c.type, TIMESTAMP))
    assert [c.name for c in table.primary_key.columns] == ["workspace_id", "id"]
    assert table.c.convex_id.unique is True


def test_enum_becomes_a_check_and_indexes_lead_with_the_workspace() -> None:
    table = table_for(Lead, MetaData())
    checks = [
        str(c.sqltext) for c in table.constraints if c.__class__.__name__ == "CheckConstraint"
    ]
    assert checks == ["segment IN ('startup', 'enterprise', 'smb')"]
    indexes = {tuple(c.name for c in ix.columns) for ix in table.indexes}
    assert indexes == {("workspace_id", "segment"), ("workspace_id", "created_at")}


def test_a_new_model_gets_its_table_without_any_hand_written_schema() -> None:
    class Invoice(Entity):
        entity_name: ClassVar[str] = "invoice"
        table_name: ClassVar[str] = "invoices"
        indexes = (IndexSpec(("dueOn",)),)
        amountCents: int  # noqa: N815  (a camelCase field, as Convex code often has)
        paid: bool = False
        lines: list[dict[str, str]] = []
        dueOn: str | None = None  # noqa: N815

    metadata = build_metadata([Invoice])
    table = metadata.tables["invoices"]
    assert {"amount_cents", "paid", "lines", "due_on"} <= set(table.c.keys())
    assert isinstance(table.c.amount_cents.type, BigInteger)
    assert isinstance(table.c.paid.type, Boolean)
    assert isinstance(table.c.lines.type, JSONB)
    assert {tuple(c.name for c in ix.columns) for ix in table.indexes} == {
        ("workspace_id", "due_on")
    }
    assert "leads" not in metadata.tables and "outbox_events" in metadata.tables


def test_unsupported_field_type_is_refused() -> None:
    class Odd(Entity):
        entity_name: ClassVar[str] = "odd"
        table_name: ClassVar[str] = "odds"
        blob: bytes

    with pytest.raises(TypeError, match="no column type"):
        table_for(Odd, MetaData())


@pytest.mark.parametrize(
    ("name", "expected"),
    [("createdAt", "created_at"), ("created_at", "created_at"), ("emailDomain2", "email_domain2")],
)
def test_snake_case(name: str, expected: str) -> None:
    assert snake_case(name) == expected


def test_every_table_with_a_workspace_is_a_tenant_table() -> None:
    assert set(tenant_tables()) == {
        "leads",
        "outbox_events",
        "processed_events",
        "dead_letters",
        "audit_logs",
        "leads_archive",
        "outbox_events_archive",
        "retention_purges",
    }


def test_models_registered_after_import_join_the_shared_metadata() -> None:
    # In a subprocess: registering here would change the registry for every test.
    program = """
import subprocess
import sys
from typing import ClassVar
from migrationkit.domain import Entity, register
from migrationkit.schema import current_metadata, tenant_tables

@register
class Note(Entity):
    entity_name: ClassVar[str] = "note"
    table_name: ClassVar[str] = "notes"
    body: str

assert "notes" in current_metadata().tables
assert "notes" in tenant_tables()
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr
