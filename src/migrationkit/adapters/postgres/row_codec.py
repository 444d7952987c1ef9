"""Entity <-> row conversion for a generated table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from migrationkit.domain.entity import TRUSTED_STORE, Entity
from migrationkit.schema.tables import field_kinds, snake_case

E = TypeVar("E", bound=Entity)


class RowCodec(Generic[E]):
    """Maps model fields to columns: JSON-shaped fields go through pydantic's
    JSON mode (nested datetimes become ISO strings, enums their values), the
    rest keep their Python types so psycopg sends them natively."""

    def __init__(self, model: type[E]) -> None:
        self.model = model
        kinds = field_kinds(model)
        self._columns = {name: snake_case(name) for name in kinds}
        self._json_mode = {name for name, kind in kinds.items() if kind.is_json or kind.enum_values}

    def to_row(self, entity: E) -> dict[str, Any]:
        python = entity.model_dump()
        as_json = entity.model_dump(mode="json", include=self._json_mode)
        return {
            column: as_json[name] if name in self._json_mode else python[name]
            for name, column in self._columns.items()
        }

    def from_row(self, row: Mapping[Any, Any]) -> E:
        # Rows were fully validated on the way in; on the way out types and
        # shapes are still checked, which catches a row changed behind the
        # kit's back into something the model cannot hold.
        return self.model.model_validate(
            {name: row[column] for name, column in self._columns.items()}, context=TRUSTED_STORE
        )
