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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_json
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
        # Values are those the repository's RowCodec stores: JSON-shaped
        # fields and enums in pydantic's JSON mode (nested datetimes as ISO
        # strings, enums as their values), the rest as the Python values
        # psycopg sends natively. Plain fields first, then the JSON-mode
        # ones: each group is read in one call.
        plain = [name for name, kind in kinds.items() if not (kind.is_json or kind.enum_values)]
        json_mode = [name for name in kinds if name not in plain]
        self._plain = attrgetter(*plain)  # a tuple: every entity has six plain fields
        self._json_mode = set(json_mode)
        self._json_values = _tuple_getter(json_mode)
        self._json_kinds = [kinds[name].is_json for name in json_mode]
        self._json_names = json_mode
        #: Model field -> column, in staging order.
        self.columns = {name: snake_case(name) for name in [*plain, *json_mode]}
        self._no_data = (None,) * len(kinds)
        names = [*self.columns.values()]
        self._identity = itemgetter(1, 4, 5 + names.index("workspace_id"), 5 + names.index("id"))
        # Lives for one transaction (ON COMMIT DROP): nothing to clean up
        # after a crash, and concurrent appliers never see each other's rows.
        # Event ids sort in the "C" collation (as do keys, in the statements):
        # the sorts only need one consistent order, and byte order is several
        # times cheaper than a linguistic one.
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

    def row(self, ord_: int, change: Change, entity: Entity | None) -> StageRow:
        head = (ord_, change.event_id, change.kind.value, change.version, change.convex_id)
        if entity is None:
            return head + self._no_data
        values: StageRow = head + self._plain(entity)
        if not self._json_names:
            return values
        as_json = entity.model_dump(mode="json", include=self._json_mode)
        # JSON columns leave here as JSON text: a row of strings and numbers
        # only is one the garbage collector stops tracking.
        return values + tuple(
            to_json(value) if is_json and value is not None else value
            for is_json, value in zip(self._json_kinds, self._json_values(as_json), strict=True)
        )

    def identity(self, row: StageRow) -> tuple[str, str | None, str, str]:
        """(event id, convex_id, workspace_id, id) of a staged write."""
        found: tuple[str, str | None, str, str] = self._identity(row)
        return found


def _tuple_getter(names: list[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    if not names:
        return lambda mapping: ()
    if len(names) == 1:
        return lambda mapping: (mapping[names[0]],)
    return itemgetter(*names)


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
    stages: dict[str, tuple[EntityStage, list[StageRow]]] = {}
    for ord_, change in enumerate(changes):
        event_id = _event_id(change)
        if event_id in seen:
            batch.repeated += 1
            continue
        seen.add(event_id)
        entry = stages.get(change.entity)
        if entry is None:
            model = _model(change, event_id)
            entry = batch.rows.get(model.entity_name)
            if entry is None:
                entry = batch.rows[model.entity_name] = (stage_for(model), [])
            stages[change.entity] = entry
        stage, rows = entry
        version = change.version
        if not isinstance(version, int) or not 0 <= version <= _MAX_BIGINT:
            raise ValidationFailed(f"change {event_id}: version must fit a 64-bit integer")
        convex_id = change.convex_id
        if convex_id is not None:
            _check_text(convex_id, "convex_id", event_id)
        if change.kind is ChangeKind.PURGE:
            batch.purges.add(stage.model.entity_name)
            rows.append(stage.row(ord_, change, None))
        else:
            batch.writes.add(stage.model.entity_name)
            rows.append(stage.row(ord_, change, _validated(change, stage.model, event_id)))
        batch.staged += 1
    return batch
