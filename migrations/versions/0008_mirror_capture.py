"""mirror capture: an application's writes to mirror tables become outbox
events (the rollback window of an existing Convex app)

Two trigger functions, attached to each mirror table by the revision that
creates it (``schema.mirror_migrations.add_mirror_ddl``):

* ``migrationkit_mirror_stamp()``, BEFORE INSERT OR UPDATE: gives a row made
  in PostgreSQL an ``_id`` Convex will never take for one of its own
  (``pg_...``), a creation time, its workspace, and a new ``_ts`` newer than
  the row's last one and than the clock (nanoseconds, like Convex's commit
  timestamps, so both stores' revisions order together).
* ``migrationkit_mirror_capture('<convex table>')``, AFTER INSERT OR UPDATE
  OR DELETE: one ``outbox_events`` row per row written, in the write's own
  transaction. AFTER, not BEFORE: only rows really written are recorded (an
  ``INSERT ... ON CONFLICT DO NOTHING`` that did nothing, or a row another
  BEFORE trigger dropped, leaves no event).

Both return at once inside the kit's own writers, which set
``migrationkit.replicating`` for their transaction: a revision that came
from Convex must not go back to it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here, not read from the kit. ``SET search_path FROM CURRENT`` pins
# the schema the kit's tables were migrated into, whatever path the
# application's session has. Both run with the writer's own rights (not
# SECURITY DEFINER): attaching a definer's function to a table of one's own
# would let anyone who may create a trigger write outbox events.
STAMP = r"""
CREATE OR REPLACE FUNCTION migrationkit_mirror_stamp() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    now_ns bigint := floor(extract(epoch FROM clock_timestamp()) * 1000000000)::bigint;
BEGIN
    IF current_setting('migrationkit.replicating', true) = 'on' THEN
        RETURN NEW;
    END IF;
    IF NEW._id IS NULL THEN
        -- '_' is not in Convex's id alphabet: normalizeId refuses it, so
        -- Convex maps it to a document of its own instead of guessing.
        NEW._id := 'pg_' || replace(gen_random_uuid()::text, '-', '');
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW._creation_time := coalesce(NEW._creation_time, OLD._creation_time);
        NEW._creation_time_ms := coalesce(NEW._creation_time_ms, OLD._creation_time_ms);
        NEW._ts := greatest(OLD._ts + 1, now_ns);
    ELSE
        NEW._ts := greatest(1, now_ns);
    END IF;
    NEW._creation_time_ms := coalesce(
        NEW._creation_time_ms,
        extract(epoch FROM coalesce(NEW._creation_time, clock_timestamp())) * 1000
    );
    NEW._creation_time := coalesce(NEW._creation_time, to_timestamp(NEW._creation_time_ms / 1000));
    NEW._deleted := coalesce(NEW._deleted, false);
    -- The arguments, when given, are the path to the workspace field's value
    -- in the row ('team_id', or 'document', 'teamId'): row-level security
    -- checks workspace_id, which the application need not write itself.
    IF TG_NARGS > 0 THEN
        NEW.workspace_id := coalesce(to_jsonb(NEW) #>> TG_ARGV, NEW.workspace_id);
    END IF;
    RETURN NEW;
END
$$
"""

CAPTURE = r"""
CREATE OR REPLACE FUNCTION migrationkit_mirror_capture() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
-- Restored when the function returns, whatever it set inside.
SET app.workspace_id TO ''
AS $$
DECLARE
    entity text := 'mirror:' || TG_ARGV[0];
    now_ns bigint := floor(extract(epoch FROM clock_timestamp()) * 1000000000)::bigint;
    doc jsonb;
    version bigint;
    workspace text;
BEGIN
    IF current_setting('migrationkit.replicating', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF OLD._deleted THEN
            RETURN NULL;  -- a tombstone purged: Convex has nothing left to delete
        END IF;
        doc := to_jsonb(OLD) || '{"_deleted": true}'::jsonb;
        version := greatest(OLD._ts + 1, now_ns);
    ELSE
        doc := to_jsonb(NEW);
        version := NEW._ts;
    END IF;
    workspace := coalesce(nullif(doc ->> 'workspace_id', ''), '*');
    -- outbox_events has forced row-level security: the event's workspace
    -- is the one the session may write, for this insert only.
    PERFORM set_config('app.workspace_id', workspace, true);
    INSERT INTO outbox_events (
        event_id, workspace_id, topic, entity, entity_id, version, occurred_at,
        dedupe_key, payload
    ) VALUES (
        gen_random_uuid()::text,
        workspace,
        entity || CASE WHEN (doc ->> '_deleted')::boolean THEN '.delete' ELSE '.upsert' END,
        entity,
        doc ->> '_id',
        version,
        clock_timestamp(),
        entity || ':' || workspace || ':' || (doc ->> '_id') || ':' || version,
        doc
    );
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(STAMP)
    op.execute(CAPTURE)


def downgrade() -> None:
    # No CASCADE: while a mirror table still has the triggers (its revision
    # not downgraded yet), PostgreSQL refuses and names them.
    op.execute("DROP FUNCTION IF EXISTS migrationkit_mirror_capture()")
    op.execute("DROP FUNCTION IF EXISTS migrationkit_mirror_stamp()")
