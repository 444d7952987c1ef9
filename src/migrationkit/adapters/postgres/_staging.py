"""A batch of changes, checked in Python and shaped as rows of staging tables.

What can be checked without the database is checked here, before the
chunk's rows are sent: a bad change fails the batch as a whole, with an
error naming its event, and the transaction holding the chunks sent before
it is rolled back. (What only the database can refuse, a ``convex_id``
another row holds, the applier diagnoses.)

Each entity gets a staging table with its own table's columns and types,
plus the event's fields: COPY hands the server every value already in the
column's type (no JSON to take apart server-side, which costs more than the
COPY itself), and the set-based statements move rows between tables of the
same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter, itemgetter
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text

from migrationkit.domain.audit import AuditEntry
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
        self._json_values = _tuple_getter(json_mode)
        # Each field serialised on its own, by its declared type (as
        # model_dump does; not by the value's class, which may be a subclass).
        self._to_column = [_column_value(model, name, kinds[name].is_json) for name in json_mode]
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
        return values + tuple(
            value if value is None else to_column(value)
            for to_column, value in zip(self._to_column, self._json_values(entity), strict=True)
        )

    def identity(self, row: StageRow) -> tuple[str, str | None, str, str]:
        """(event id, convex_id, workspace_id, id) of a staged write."""
        found: tuple[str, str | None, str, str] = self._identity(row)
        return found


def _tuple_getter(names: list[str]) -> Callable[[Entity], tuple[Any, ...]]:
    if not names:
        return lambda entity: ()
    if len(names) == 1:
        return lambda entity: (getattr(entity, names[0]),)
    return attrgetter(*names)


def _column_value(model: type[Entity], name: str, is_json: bool) -> Callable[[Any], Any]:
    """How a field's value is stored: JSON text for JSON columns, its JSON-mode value else.

    JSON columns leave as JSON text: a row of strings and numbers only is
    one the garbage collector stops tracking.
    """
    info = model.model_fields[name]
    declared: Any = info.annotation
    if info.metadata:  # constraints and serialisers given with Field(...) or Annotated
        declared = Annotated[(declared, *info.metadata)]
    adapter: TypeAdapter[Any] = TypeAdapter(declared)
    if is_json:
        return adapter.dump_json
    return partial(adapter.dump_python, mode="json")


_STAGES: dict[type[Entity], EntityStage] = {}


def stage_for(model: type[Entity]) -> EntityStage:
    stage = _STAGES.get(model)
    if stage is None:
        stage = _STAGES[model] = EntityStage(model)
    return stage


@dataclass
class StagedBatch:
    """Rows per entity, and what the statements need to know about them."""

    #: Entity name -> its stage and the rows of its upserts and soft deletes.
    writes: dict[str, tuple[EntityStage, list[StageRow]]] = field(default_factory=dict)
    #: Entity name -> its stage and the rows of its purges (applied after all writes).
    purges: dict[str, tuple[EntityStage, list[StageRow]]] = field(default_factory=dict)
    staged: int = 0
    #: Events seen earlier in the same batch: duplicates, never staged.
    repeated: int = 0
    #: The audit entries the changes carry (inserted whatever the version
    #: guard decides: the history holds every write, stale or not).
    audits: list[AuditEntry] = field(default_factory=list)


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


def stage_changes(
    changes: Iterable[tuple[int, Change]], seen: set[str] | None = None
) -> StagedBatch:
    """Check every change and turn it into a staging row; raise on the first bad one.

    ``changes`` are numbered by their place in the delivered batch (the
    number breaks ties between equal versions). A batch staged in chunks
    shares one ``seen`` set, so an event repeated in a later chunk is
    counted as a duplicate there too.
    """
    batch = StagedBatch()
    seen = set() if seen is None else seen
    models: dict[str, type[Entity]] = {}
    for ord_, change in changes:
        event_id = _event_id(change)
        if event_id in seen:
            batch.repeated += 1
            continue
        seen.add(event_id)
        model = models.get(change.entity)
        if model is None:
            model = models[change.entity] = _model(change, event_id)
        stage = stage_for(model)
        version = change.version
        if not isinstance(version, int) or not 0 <= version <= _MAX_BIGINT:
            raise ValidationFailed(f"change {event_id}: version must fit a 64-bit integer")
        convex_id = change.convex_id
        if convex_id is not None:
            _check_text(convex_id, "convex_id", event_id)
        if change.kind is ChangeKind.PURGE:
            row = stage.row(ord_, change, None)
            batch.purges.setdefault(model.entity_name, (stage, []))[1].append(row)
        else:
            entity = _validated(change, model, event_id)
            row = stage.row(ord_, change, entity)
            batch.writes.setdefault(model.entity_name, (stage, []))[1].append(row)
            if change.audit is not None:
                batch.audits.append(_audit(change, entity, event_id))
        batch.staged += 1
    return batch


def _audit(change: Change, entity: Entity, event_id: str) -> AuditEntry:
    audit = AuditEntry.parse(change.audit, f"audit entry in change {event_id}")
    if (audit.workspace_id, audit.resource_type, audit.resource_id) != (
        entity.workspace_id,
        entity.entity_name,
        entity.id,
    ):
        raise ValidationFailed(
            f"change {event_id}: the audit entry is about another {audit.resource_type}"
            f" {audit.resource_id} in {audit.workspace_id}"
        )
    return audit


def _sort_key(change: Change) -> tuple[str, str, str]:
    # str(): a change with a malformed field must reach the checks above
    # and fail there with its event named, not fail here on a comparison.
    return (str(change.entity), str(change.workspace_id), str(change.entity_id))


def in_key_order(changes: Iterable[Change]) -> list[tuple[int, Change]]:
    """The changes sorted by (entity, workspace, id), numbered in that order.

    Applied in this order, chunk after chunk, a batch takes its row locks in
    key order, as concurrent appliers do: a chunk never waits on a row that
    a later chunk of another applier locked first. The sort is stable, so
    the changes of one entity keep their delivered order, which the number
    keeps for breaking ties between equal versions; and each chunk's
    numbers are above every earlier chunk's. Purges name no workspace or
    id and sort among themselves; they are applied last.
    """
    return list(enumerate(sorted(changes, key=_sort_key)))
