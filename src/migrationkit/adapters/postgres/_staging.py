"""A batch of changes, checked in Python and shaped as rows of staging tables.

What can be checked without the database is checked here, before a byte is
sent: a bad change fails the batch as a whole, with an error naming its
event, and the database never sees the batch. (What only the database can
refuse, a ``convex_id`` another row holds, the applier diagnoses.)

Each entity gets a staging table with its own table's columns and types,
plus the event's fields: COPY hands the server every value already in the
column's type (no JSON to take apart server-side, which costs more than the
COPY itself), and the set-based statements move rows between tables of the
same shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any

from pydantic import ValidationError
from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text

from migrationkit.domain.change import Change, ChangeKind
from migrationkit.domain.entity import Entity
from migrationkit.domain.registry import model_for
from migrationkit.errors import UnknownEntity, ValidationFailed
from migrationkit.schema.metadata import entity_table
from migrationkit.schema.tables import field_kinds, snake_case

_MAX_BIGINT = 2**63 - 1

#: The event's own fields, prefixed so they never meet an entity's columns.
ORD, EVENT_ID, KIND, VERSION, CONVEX_ID = (
    "mk_ord",
    "mk_event_id",
    "mk_kind",
    "mk_version",
    "mk_convex_id",
)

StageRow = tuple[Any, ...]


class EntityStage:
    """The staging table of one entity, and how its rows are made."""

    def __init__(self, model: type[Entity]) -> None:
        self.model = model
        self.target = entity_table(model)
        kinds = field_kinds(model)
        # Values go to COPY as the repository's RowCodec sends them:
        # JSON-shaped fields and enums in pydantic's JSON mode (nested
        # datetimes as ISO strings, enums as their values; psycopg serializes
        # the JSON ones), the rest as the Python values psycopg sends natively.
        # Plain fields first, then the JSON-mode ones: each group is read
        # in one call.
        plain = [name for name, kind in kinds.items() if not (kind.is_json or kind.enum_values)]
        json_mode = [name for name in kinds if name not in plain]
        self._plain = attrgetter(*plain)  # a tuple: every entity has six plain fields
        self._json_mode = set(json_mode)
        self._json_values = itemgetter(*json_mode) if len(json_mode) > 1 else None
        self._json_names = json_mode
        #: Model field -> column, in staging order.
        self.columns = {name: snake_case(name) for name in [*plain, *json_mode]}
        self._no_data = (None,) * len(kinds)
        # Lives for one transaction (ON COMMIT DROP): nothing to clean up
        # after a crash, and concurrent appliers never see each other's rows.
        # Event ids sort in the "C" collation: byte order is all the sort
        # needs, and it is several times cheaper than a linguistic one.
        self.table = Table(
            f"mk_apply_{self.target.name}",
            MetaData(),
            Column(ORD, Integer(), nullable=False),
            Column(EVENT_ID, Text(collation="C"), nullable=False),
            Column(KIND, Text(), nullable=False),
            Column(VERSION, BigInteger(), nullable=False),
            Column(CONVEX_ID, Text(), nullable=True),
            *(Column(c, self.target.c[c].type, nullable=True) for c in self.columns.values()),
            prefixes=["TEMPORARY"],
            postgresql_on_commit="DROP",
        )

    def row(
        self, ord_: int, change: Change, convex_id: str | None, entity: Entity | None
    ) -> StageRow:
        head = (ord_, change.event_id, change.kind.value, change.version, convex_id)
        if entity is None:
            return head + self._no_data
        values: StageRow = head + self._plain(entity)
        if not self._json_names:
            return values
        as_json = entity.model_dump(mode="json", include=self._json_mode)
        if self._json_values is None:
            return (*values, as_json[self._json_names[0]])
        json_values: StageRow = self._json_values(as_json)
        return values + json_values


_STAGES: dict[type[Entity], EntityStage] = {}


def stage_for(model: type[Entity]) -> EntityStage:
    stage = _STAGES.get(model)
    if stage is None:
        stage = _STAGES[model] = EntityStage(model)
    return stage


@dataclass
class StagedBatch:
    """Rows per entity, and what the statements need to know about them."""

    #: Entity name -> its stage and rows.
    rows: dict[str, tuple[EntityStage, list[StageRow]]] = field(default_factory=dict)
    staged: int = 0
    #: Events seen earlier in the same batch: duplicates, never staged.
    repeated: int = 0
    #: Entity names with upserts or deletes, and with purges.
    writes: set[str] = field(default_factory=set)
    purges: set[str] = field(default_factory=set)
    #: Event id -> (entity name, workspace, id, convex_id) of writes naming
    #: a Convex id: which event a uniqueness failure came from.
    convex_ids: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)


def _check_text(value: Any, what: str, event_id: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationFailed(f"change {event_id}: {what} must be a non-empty string")
    if "\x00" in value:
        raise ValidationFailed(f"change {event_id}: {what} holds a NUL character (U+0000)")
    return value


def _event_id(change: Change) -> str:
    raw = change.event_id
    if not isinstance(raw, str) or not raw or "\x00" in raw:
        raise ValidationFailed(f"change with event id {raw!r}: not a usable event id")
    return raw


def _model(change: Change, event_id: str) -> type[Entity]:
    try:
        return model_for(change.entity)
    except UnknownEntity:
        raise UnknownEntity(
            f"change {event_id}: no entity or table named {change.entity!r} is registered"
        ) from None


def _validated(change: Change, model: type[Entity], event_id: str) -> Entity:
    try:
        entity = model.model_validate(change.data)
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(
            f"{model.entity_name} in change {event_id}", exc
        ) from None
    if entity.workspace_id != change.workspace_id:
        raise ValidationFailed(f"change {event_id}: the data's workspace_id is not the change's")
    if entity.id != str(change.entity_id).upper():
        raise ValidationFailed(f"change {event_id}: the data's id is not the change's entity id")
    if entity.version != change.version:
        raise ValidationFailed(
            f"change {event_id}: the data's version {entity.version} is not"
            f" the change's {change.version}"
        )
    if change.kind is ChangeKind.DELETE and entity.deleted_at is None:
        raise ValidationFailed(f"change {event_id}: a delete must carry deleted_at")
    return entity


def stage_changes(changes: Iterable[Change]) -> StagedBatch:
    """Check every change and turn it into a staging row; raise on the first bad one."""
    batch = StagedBatch()
    seen: set[str] = set()
    convex_owner: dict[str, tuple[str, str, str]] = {}
    for ord_, change in enumerate(changes):
        event_id = _event_id(change)
        if event_id in seen:
            batch.repeated += 1
            continue
        seen.add(event_id)
        model = _model(change, event_id)
        name = model.entity_name
        if not isinstance(change.version, int) or not 0 <= change.version <= _MAX_BIGINT:
            raise ValidationFailed(f"change {event_id}: version must fit a 64-bit integer")
        convex_id = None
        if change.convex_id is not None:
            convex_id = _check_text(change.convex_id, "convex_id", event_id)
        entity = None
        if change.kind is ChangeKind.PURGE:
            batch.purges.add(name)
        else:
            entity = _validated(change, model, event_id)
            batch.writes.add(name)
            if convex_id is not None:
                owner = (name, entity.workspace_id, entity.id)
                if convex_owner.setdefault(convex_id, owner) != owner:
                    raise ValidationFailed(
                        f"change {event_id}: convex_id {convex_id!r} names another"
                        " entity earlier in the batch"
                    )
                batch.convex_ids[event_id] = (*owner, convex_id)
        entry = batch.rows.get(name)
        if entry is None:
            entry = batch.rows[name] = (stage_for(model), [])
        entry[1].append(entry[0].row(ord_, change, convex_id, entity))
        batch.staged += 1
    return batch
