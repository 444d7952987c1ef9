"""The policy as steps over tables: what the plan counts and the run does.

The plan and the run read the same ``Step`` objects, built from the same
``now``, so what the plan reports is what the run removes (the same
predicates, not two descriptions of one rule that could drift apart).

A step moves or deletes the rows of one table that match ``due``:

* entity tables: only tombstones (``deleted_at`` set). Those between the
  archive age and the hard-delete age go to ``<table>_archive``; those past
  the hard-delete age are deleted (from the live table if they never were
  archived, and from the archive). Either way a row leaving the live table
  is queued in ``retention_purges`` for Convex to remove too.
* ``outbox_events``: only ``done`` and ``dead`` events, by ``occurred_at``,
  the same two ages. ``pending`` and ``processing`` ones are never touched.
* ``audit_logs``: deleted past ``keep_days`` (by ``at``), never archived.

Step windows do not overlap: a row archived by this run is younger than
the hard-delete age, so the same run never deletes it from the archive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, MetaData, Table

from migrationkit.domain.entity import Entity
from migrationkit.retention.policy import RetentionPolicy, cutoff, entity_models
from migrationkit.schema.metadata import current_metadata
from migrationkit.schema.outbox_tables import outbox_table
from migrationkit.schema.retention_tables import entity_archive_table, outbox_archive_table

__all__ = ["AUDIT_TABLE", "Action", "Step", "entity_models", "steps"]

AUDIT_TABLE = "audit_logs"
#: Outbox statuses retention may touch: delivered, or given up on.
SETTLED = ("done", "dead")


class Action(StrEnum):
    ARCHIVE = "archive"
    DELETE = "delete"


@dataclass(frozen=True)
class Step:
    """Rows of ``table`` matching ``due`` are archived into ``archive`` or deleted."""

    table: Table
    action: Action
    due: tuple[ColumnElement[bool], ...]
    archive: Table | None = None
    #: The entity whose rows leave its live table here: Convex must follow.
    entity: type[Entity] | None = field(default=None)

    @property
    def name(self) -> str:
        return self.table.name


def steps(policy: RetentionPolicy, now: datetime, metadata: MetaData | None = None) -> list[Step]:
    """The steps of ``policy`` as of ``now``, in the order the run takes them."""
    md = metadata if metadata is not None else current_metadata()
    made: list[Step] = []
    for model, table_name in entity_models(policy):
        rule = policy.entities[table_name]
        live = md.tables[table_name]
        archive = entity_archive_table(model, md)
        archive_cut = cutoff(now, rule.archive_after_days)
        delete_cut = cutoff(now, rule.hard_delete_after_days)
        tombstone = live.c.deleted_at.is_not(None)
        made += [
            Step(
                live,
                Action.ARCHIVE,
                (tombstone, live.c.deleted_at <= archive_cut, live.c.deleted_at > delete_cut),
                archive=archive,
                entity=model,
            ),
            Step(live, Action.DELETE, (tombstone, live.c.deleted_at <= delete_cut), entity=model),
            Step(archive, Action.DELETE, (archive.c.deleted_at <= delete_cut,)),
        ]
    outbox, outbox_archive = outbox_table(md), outbox_archive_table(md)
    rule_o = policy.outbox_events
    archive_cut = cutoff(now, rule_o.archive_after_days)
    delete_cut = cutoff(now, rule_o.hard_delete_after_days)
    settled = outbox.c.status.in_(SETTLED)
    made += [
        Step(
            outbox,
            Action.ARCHIVE,
            (settled, outbox.c.occurred_at <= archive_cut, outbox.c.occurred_at > delete_cut),
            archive=outbox_archive,
        ),
        Step(outbox, Action.DELETE, (settled, outbox.c.occurred_at <= delete_cut)),
        Step(outbox_archive, Action.DELETE, (outbox_archive.c.occurred_at <= delete_cut,)),
    ]
    audit = md.tables.get(AUDIT_TABLE)
    if audit is not None:  # the audit log is optional to the kit's schema
        keep_cut = cutoff(now, policy.audit_logs.keep_days)
        made.append(Step(audit, Action.DELETE, (audit.c.at <= keep_cut,)))
    return made
