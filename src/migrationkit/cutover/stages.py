"""The stages of a cutover, one reversible step each.

=============  =============  ====================  ==============================
stage          authoritative  other store written   reads from
=============  =============  ====================  ==============================
convex_only    Convex         no                    Convex
shadow_write   Convex         yes (outbox/inline)   Convex
shadow_read    Convex         yes                   Convex; PostgreSQL compared
pg_reads       Convex         yes                   PostgreSQL (hybrid: fallback)
pg_primary     PostgreSQL     yes (PG's outbox)     PostgreSQL
pg_only        PostgreSQL     no                    PostgreSQL
=============  =============  ====================  ==============================

A write to the authoritative store decides the call; a write to the other
store never fails it (it is counted, logged and left to the outbox worker).
"""

from __future__ import annotations

from enum import StrEnum


class Store(StrEnum):
    CONVEX = "convex"
    POSTGRES = "postgres"

    @property
    def other(self) -> Store:
        return Store.POSTGRES if self is Store.CONVEX else Store.CONVEX


class Stage(StrEnum):
    CONVEX_ONLY = "convex_only"
    SHADOW_WRITE = "shadow_write"
    SHADOW_READ = "shadow_read"
    PG_READS = "pg_reads"
    PG_PRIMARY = "pg_primary"
    PG_ONLY = "pg_only"

    @property
    def position(self) -> int:
        return list(Stage).index(self)

    @property
    def authority(self) -> Store:
        """Where writes must succeed: the system of record at this stage."""
        return Store.POSTGRES if self in (Stage.PG_PRIMARY, Stage.PG_ONLY) else Store.CONVEX

    @property
    def replicates(self) -> bool:
        """Whether the other store is kept in step (by the outbox worker, or inline)."""
        return self not in (Stage.CONVEX_ONLY, Stage.PG_ONLY)

    @property
    def reads_from(self) -> Store:
        if self in (Stage.PG_READS, Stage.PG_PRIMARY, Stage.PG_ONLY):
            return Store.POSTGRES
        return Store.CONVEX

    @property
    def compares_reads(self) -> bool:
        """Shadow reads: read the other store too and compare."""
        return self is Stage.SHADOW_READ

    @property
    def next(self) -> Stage | None:
        stages = list(Stage)
        return stages[self.position + 1] if self.position + 1 < len(stages) else None

    @property
    def previous(self) -> Stage | None:
        return list(Stage)[self.position - 1] if self.position > 0 else None

    def is_forward_of(self, other: Stage) -> bool:
        return self.position > other.position
