"""Table schemas + the mirror config -> the Python module of mirror models.

One ``MirrorDocument`` subclass per selected table, registered with
``@register_mirror``. The same input always gives the same bytes: tables
are sorted by qualified name, fields by Convex name, literal values by
value, and the header names the source but no time, so ``introspect
--check`` can tell drift from noise.

The text is written already formatted as ``ruff format`` (and black) would
leave it at their default 88 columns. Every construct that does not fit is
split with a trailing comma in each bracket, which the formatters keep
split at any line length, so the file stays unchanged under a project's
own longer line length too; the one exception is a one-value ``Literal``
on a very long line, which a longer line length joins again.

Naming (see docs/mirror-tables.md): a field's attribute is its column, the
snake_case of its Convex name unless the config renames it; a name that is
a Python keyword or a pydantic attribute gets a trailing ``_``, and a name
already taken gets ``_2``, ``_3``... Whenever the attribute differs from
the Convex name the field carries ``Field(alias=<Convex name>)``.
"""

from __future__ import annotations

import json
import keyword
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from migrationkit.errors import ConfigurationError
from migrationkit.mirror.columns import SYSTEM_COLUMNS, WORKSPACE, ColumnKindName
from migrationkit.mirror.config import MirrorConfig, TableConfig
from migrationkit.mirror.convex_types import ConvexType, FieldType, TableSchema
from migrationkit.mirror.model import MirrorTable

__all__ = [
    "FieldPlan",
    "ModelPlan",
    "column_type_text",
    "convex_type_text",
    "generate_module",
    "plan_models",
    "render_module",
]

LINE = 88
_INDENT = "    "
#: Longest generated (not renamed) column name: PostgreSQL allows 63, and a
#: shorter one keeps every field line splittable within LINE.
_AUTO_NAME_MAX = 50
# Attributes a field must not take: MirrorDocument's own, pydantic's (the
# pre-2.0 methods; every ``model_*`` name is refused by prefix), and the
# names the generated annotations use.
_RESERVED = frozenset(
    {
        "id",
        "creation_time",
        "mirror",
        "construct",
        "copy",
        "dict",
        "from_orm",
        "json",
        "parse_file",
        "parse_obj",
        "parse_raw",
        "schema",
        "schema_json",
        "update_forward_refs",
        "validate",
        "str",
        "float",
        "int",
        "bool",
        "bytes",
    }
)
_IMPORTED = frozenset(
    {
        "Annotated",
        "Any",
        "ClassVar",
        "Literal",
        "Field",
        "ConvexJson",
        "MirrorDocument",
        "MirrorTable",
        "RefersTo",
        "register_mirror",
    }
)
_SIMPLE: dict[str, str] = {
    "string": "str",
    "float64": "float",
    "int64": "int",
    "boolean": "bool",
    "bytes": "bytes",
}
_KINDS: dict[str, ColumnKindName] = {
    "string": "text",
    "float64": "float64",
    "int64": "int64",
    "boolean": "boolean",
    "bytes": "bytes",
}
_SQL: dict[str, str] = {
    "text": "text",
    "id": "text, indexed",
    "enum": "text + CHECK",
    "float64": "double precision",
    "int64": "bigint",
    "boolean": "boolean",
    "bytes": "bytea",
    "json": "jsonb",
}


@dataclass(frozen=True)
class _Annotation:
    """A field's annotation: ``head[args...]`` (or just ``head``), maybe ``| None``."""

    head: str
    args: tuple[str, ...] = ()
    nullable: bool = False

    def inline(self) -> str:
        base = f"{self.head}[{', '.join(self.args)}]" if self.args else self.head
        return f"{base} | None" if self.nullable else base


@dataclass(frozen=True)
class FieldPlan:
    """One field of a model: where it comes from and how it is stored."""

    convex_name: str
    attribute: str
    convex_type: ConvexType
    nullable: bool
    #: The column kind (see ``migrationkit.mirror.columns``): text, id, enum,
    #: float64, int64, boolean, bytes or json.
    kind: ColumnKindName
    annotation: _Annotation = field(repr=False)
    refers_to: str | None = None


@dataclass(frozen=True)
class ModelPlan:
    """One model class: its table, its fields, and what the user should know."""

    schema: TableSchema
    class_name: str
    mirror: MirrorTable
    fields: tuple[FieldPlan, ...]
    notes: tuple[str, ...] = ()


# --- planning -------------------------------------------------------------------


def plan_models(tables: Iterable[TableSchema], config: MirrorConfig) -> list[ModelPlan]:
    """The models to write, in qualified-name order.

    Raises ``ConfigurationError`` naming what the config names but the
    deployment lacks (a table, a field), and any choice that cannot work
    (a foreign key to a table not mirrored, two tables on one name).
    """
    by_name: dict[str, TableSchema] = {}
    for table in tables:
        by_name[table.qualified_name] = table
    unknown = config.unknown_tables(set(by_name))
    if unknown:
        known = ", ".join(sorted(by_name)) or "none"
        raise ConfigurationError(
            f"the mirror config names tables the deployment does not have: {', '.join(unknown)}"
            f" (tables: {known})"
        )
    selected = [by_name[name] for name in sorted(by_name) if config.selects(name)]
    pg_names = _pg_table_names(selected, config)
    class_names = _class_names([t.qualified_name for t in selected])
    plans = []
    for table in selected:
        plans.append(
            _plan(table, config, pg_names, class_names[table.qualified_name], set(pg_names))
        )
    return plans


def _plan(
    table: TableSchema,
    config: MirrorConfig,
    pg_names: dict[str, str],
    class_name: str,
    mirrored: set[str],
) -> ModelPlan:
    name = table.qualified_name
    own = config.for_table(name)
    by_field = {f.name: f for f in table.fields}
    # `document = true`: the table's shape is known but not fixed (a table
    # without a schema, whose shape json_schemas infers from what is stored).
    forced = own.document and table.fallback is None
    document_only = forced or table.fallback is not None
    _check_field_config(name, own, by_field, document_only)
    notes = list(table.notes)
    workspace = _workspace_field(name, own, config, by_field, table.fallback is not None, notes)
    excluded = tuple(sorted(own.exclude_fields))
    kept = [
        f
        for f in sorted(table.fields, key=lambda f: f.name)
        if f.name not in excluded and not forced
    ]
    taken = {WORKSPACE} if workspace is not None else set()
    attributes = _attributes(name, [f.name for f in kept], own.rename, taken)
    fields = tuple(
        _field_plan(f, attributes[f.name], table.component, own, mirrored, name) for f in kept
    )
    mirror = MirrorTable(
        convex_table=table.name,
        pg_table=pg_names[name],
        component=table.component,
        pg_schema=config.schema_name,
        workspace_field=workspace,
        document_only=document_only,
        excluded=excluded,
    )
    if forced:
        notes.insert(
            0,
            "The mirror config asks for whole documents (document = true): each document"
            " is kept whole in ``document`` (jsonb).",
        )
    if table.fallback is not None:
        reason = f" ({notes.pop(0)})" if notes else ""
        notes.insert(
            0, f"{table.fallback}{reason}: each document is kept whole in ``document`` (jsonb)."
        )
    return ModelPlan(table, class_name, mirror, fields, tuple(notes))


def _check_field_config(
    table: str, own: TableConfig, fields: dict[str, FieldType], document_only: bool
) -> None:
    named = {
        "exclude_fields": list(own.exclude_fields),
        "rename": list(own.rename),
        "foreign_keys": list(own.foreign_keys),
    }
    for key, names in named.items():
        if names and document_only:
            raise ConfigurationError(
                f"mirror config table.{table}.{key}: the table has no known fields (its"
                " documents are kept whole), so there is nothing to apply it to"
            )
        missing = sorted(set(names) - set(fields))
        if missing:
            known = ", ".join(sorted(fields)) or "none"
            raise ConfigurationError(
                f"mirror config table.{table}.{key}: no field {', '.join(map(repr, missing))}"
                f" in Convex table {table} (fields: {known})"
            )


def _workspace_field(
    table: str,
    own: TableConfig,
    config: MirrorConfig,
    fields: dict[str, FieldType],
    document_only: bool,
    notes: list[str],
) -> str | None:
    if own.workspace_field is not None:
        # Named for this table: trusted even without known fields, checked with them.
        if not document_only:
            problem = _workspace_problem(fields.get(own.workspace_field))
            if problem:
                raise ConfigurationError(
                    f"mirror config table.{table}.workspace_field:"
                    f" {own.workspace_field!r} {problem}"
                )
        return own.workspace_field
    name = config.workspace_field
    if name is None or name not in fields:
        return None
    problem = _workspace_problem(fields[name])
    if problem:
        notes.append(f"No workspace_id (RLS): the workspace field {name!r} {problem}.")
        return None
    return name


def _workspace_problem(found: FieldType | None) -> str | None:
    if found is None:
        return "is not a field of the table"
    base, _ = found.type.without_null()
    if base.kind not in ("string", "id"):
        return f"holds {convex_type_text(found.type)}, not strings"
    return None


def _field_plan(
    convex_field: FieldType,
    attribute: str,
    component: str,
    own: TableConfig,
    mirrored: set[str],
    table: str,
) -> FieldPlan:
    base, had_null = convex_field.type.without_null()
    nullable = convex_field.optional or had_null or base.kind == "any"
    refers_to: str | None = None
    literals = base.string_literals()
    kind: ColumnKindName
    if base.kind in _SIMPLE:
        kind = _KINDS[base.kind]
        annotation = _Annotation(_SIMPLE[base.kind], nullable=nullable)
    elif base.kind == "literal" and not isinstance(base.value, str):
        scalar = {bool: "boolean", int: "int64", float: "float64"}[type(base.value)]
        kind = _KINDS[scalar]
        annotation = _Annotation(_SIMPLE[scalar], nullable=nullable)
    elif literals is not None:
        kind = "enum"
        values = tuple(py_string(v) for v in sorted(set(literals)))
        annotation = _Annotation("Literal", values, nullable)
    elif base.kind == "id" and base.table is not None:
        kind = "id"
        refers_to = f"{component}/{base.table}" if component else base.table
        wants_key = convex_field.name in own.foreign_keys
        if wants_key and refers_to not in mirrored:
            raise ConfigurationError(
                f"mirror config table.{table}.foreign_keys: {convex_field.name!r} refers to"
                f" {refers_to}, which is not mirrored (select it, or drop the foreign key)"
            )
        marker = f"RefersTo({py_string(refers_to)}{', foreign_key=True' if wants_key else ''})"
        annotation = _Annotation("Annotated", ("str", marker), nullable)
    else:
        kind = "json"
        annotation = _Annotation("Annotated", ("Any", "ConvexJson()"), nullable)
    if convex_field.name in own.foreign_keys and kind != "id":
        raise ConfigurationError(
            f"mirror config table.{table}.foreign_keys: {convex_field.name!r} is not a v.id()"
            f" field (it holds {convex_type_text(convex_field.type)})"
        )
    return FieldPlan(
        convex_name=convex_field.name,
        attribute=attribute,
        convex_type=convex_field.type,
        nullable=nullable,
        kind=kind,
        annotation=annotation,
        refers_to=refers_to,
    )


def snake_case(name: str) -> str:
    """``teamId`` -> ``team_id``, ``HTTPCode`` -> ``http_code``, ``a-b c`` -> ``a_b_c``."""
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", spaced)
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", spaced.lower())).strip("_")


def _attribute_for(convex_name: str) -> str:
    name = snake_case(convex_name)[:_AUTO_NAME_MAX].rstrip("_") or "field"
    if name[0].isdigit():
        name = f"f_{name}"[:_AUTO_NAME_MAX]
    if _is_reserved(name):
        name += "_"
    return name


def _is_reserved(name: str) -> bool:
    return keyword.iskeyword(name) or name in _RESERVED or name.startswith("model_")


def _attributes(
    table: str, convex_names: Sequence[str], rename: dict[str, str], taken: set[str]
) -> dict[str, str]:
    """Convex field -> attribute (= column); renames first, so nothing takes their name."""
    out: dict[str, str] = {}
    used = set(taken) | set(SYSTEM_COLUMNS)
    for convex_name in convex_names:
        wanted = rename.get(convex_name)
        if wanted is None:
            continue
        if wanted.startswith("_") or _is_reserved(wanted):
            raise ConfigurationError(
                f"mirror config table.{table}.rename: {convex_name!r} -> {wanted!r}: that name is"
                " reserved (a leading _, a Python keyword, or an attribute every mirror model"
                " has); choose another"
            )
        if wanted in used:
            raise ConfigurationError(
                f"mirror config table.{table}.rename: {convex_name!r} -> {wanted!r}: the column"
                " name is already taken"
            )
        out[convex_name] = wanted
        used.add(wanted)
    for convex_name in convex_names:
        if convex_name in out:
            continue
        base = _attribute_for(convex_name)
        candidate, number = base, 2
        while candidate in used:
            candidate, number = f"{base}_{number}", number + 1
        out[convex_name] = candidate
        used.add(candidate)
    return out


def _pg_table_names(tables: Sequence[TableSchema], config: MirrorConfig) -> dict[str, str]:
    """Qualified Convex name -> PostgreSQL table name (config ``name``, else snake_case).

    A component's table keeps its own name unless another table has it;
    then it is prefixed with the component's name.
    """
    chosen: dict[str, str] = {}
    for table in tables:
        given = config.for_table(table.qualified_name).name
        chosen[table.qualified_name] = given or _pg_name(table.name)
    counts: dict[str, int] = {}
    for name in chosen.values():
        counts[name] = counts.get(name, 0) + 1
    for table in tables:
        qualified = table.qualified_name
        renamed = config.for_table(qualified).name is not None
        if table.component and counts[chosen[qualified]] > 1 and not renamed:
            chosen[qualified] = _pg_name(f"{table.component}_{table.name}")
    seen: dict[str, str] = {}
    for qualified, name in sorted(chosen.items()):
        if name in seen:
            raise ConfigurationError(
                f"Convex tables {seen[name]} and {qualified} would both be PostgreSQL table"
                f' {name!r}: give one a name in the mirror config ([mirror.table."{qualified}"]'
                " name = ...)"
            )
        seen[name] = qualified
    return chosen


def _pg_name(name: str) -> str:
    snake = snake_case(name)[:63].rstrip("_") or "table"
    return f"t_{snake}"[:63] if snake[0].isdigit() else snake


def _class_names(qualified_names: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    used: set[str] = set()
    for qualified in qualified_names:
        words = [w for w in re.split(r"[^0-9A-Za-z]+", qualified) if w]
        base = "".join(w[0].upper() + w[1:] for w in words) or "Table"
        if base[0].isdigit():
            base = f"T{base}"
        if base in _IMPORTED or keyword.iskeyword(base) or base == "MirrorDocument":
            base += "Table"
        candidate, number = base, 2
        while candidate in used:
            candidate, number = f"{base}{number}", number + 1
        out[qualified] = candidate
        used.add(candidate)
    return out


# --- describing ------------------------------------------------------------------


def convex_type_text(t: ConvexType) -> str:
    """A type as a Convex validator: ``v.array(v.string())``."""
    if t.kind in ("string", "float64", "int64", "boolean", "bytes", "null", "any"):
        return f"v.{t.kind}()"
    if t.kind == "id":
        return f'v.id("{t.table}")'
    if t.kind == "literal":
        return f"v.literal({json.dumps(t.value)})"
    if t.kind == "array":
        return f"v.array({convex_type_text(t.items or ConvexType('any'))})"
    if t.kind == "record":
        return f"v.record(v.string(), {convex_type_text(t.items or ConvexType('any'))})"
    if t.kind == "object":
        inner = ", ".join(
            f"{f.name}: "
            + (
                f"v.optional({convex_type_text(f.type)})"
                if f.optional
                else convex_type_text(f.type)
            )
            for f in t.fields
        )
        return f"v.object({{{inner}}})"
    return f"v.union({', '.join(convex_type_text(m) for m in t.members)})"


def column_type_text(plan: FieldPlan) -> str:
    """The column's PostgreSQL type, as the summary shows it."""
    text = _SQL[plan.kind]
    if plan.refers_to is not None:
        text += f" -> {plan.refers_to}"
    return text + (", null" if plan.nullable else "")


# --- rendering ---------------------------------------------------------------------


def py_string(value: str) -> str:
    """A Python string literal with the quotes a formatter picks (double, unless
    the text holds more double than single quotes)."""
    quote = "'" if value.count('"') > value.count("'") else '"'
    out = []
    for char in value:
        if char == "\\":
            out.append("\\\\")
        elif char == quote:
            out.append("\\" + quote)
        elif char.isprintable():
            out.append(char)
        else:
            out.append(repr(char)[1:-1])
    return quote + "".join(out) + quote


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def render_module(plans: Sequence[ModelPlan], *, source: str) -> str:
    """The module's text for ``plans`` (from :func:`plan_models`)."""
    typing_names = {"ClassVar"}
    mirror_names = {"MirrorDocument", "MirrorTable", "register_mirror"}
    uses_field = False
    for f in (f for plan in plans for f in plan.fields):
        if f.kind == "json":
            typing_names |= {"Annotated", "Any"}
            mirror_names.add("ConvexJson")
        elif f.kind == "id":
            typing_names.add("Annotated")
            mirror_names.add("RefersTo")
        elif f.kind == "enum":
            typing_names.add("Literal")
        uses_field = uses_field or f.attribute != f.convex_name
    lines = [
        f"# Generated by `migrationkit introspect` from {_printable(source)}.",
        "# Do not edit: change the mirror config and run the command again",
        "# (`migrationkit introspect --check` tells when this file is out of date).",
        '"""Mirror models: one per Convex table, in the table\'s own shape."""',
        "",
        f"from typing import {', '.join(sorted(typing_names))}",
        "",
        *_import_lines("migrationkit.mirror", sorted(mirror_names, key=_isort_key)),
    ]
    if uses_field:
        lines.append("from pydantic import Field")
    for plan in plans:
        lines += ["", "", *_class_lines(plan)]
    return "\n".join(lines) + "\n"


def _isort_key(name: str) -> tuple[int, str]:
    # isort's default order: CONSTANTS, Classes, then functions.
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


def _import_lines(module: str, names: Sequence[str]) -> list[str]:
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= LINE:
        return [line]
    return [f"from {module} import (", *[f"{_INDENT}{n}," for n in names], ")"]


def _class_lines(plan: ModelPlan) -> list[str]:
    table = plan.mirror
    where = f" of component ``{table.component}``" if table.component else ""
    summary = f'{_INDENT}"""Convex table ``{table.convex_table}``{where}.'
    notes = [
        line
        for note in plan.notes
        for line in textwrap.wrap(
            _printable(note).replace('"""', "'''").replace("\\", "/"),
            LINE - len(_INDENT),
            break_long_words=False,
            break_on_hyphens=False,
        )
    ]
    doc = (
        [summary + '"""']
        if not notes
        else [summary, "", *[_INDENT + n for n in notes], _INDENT + '"""']
    )
    lines = ["@register_mirror", f"class {plan.class_name}(MirrorDocument):", *doc, ""]
    lines += _mirror_lines(table)
    if plan.fields:
        lines.append("")
    for f in plan.fields:
        lines += _field_lines(f)
    return lines


def _mirror_lines(table: MirrorTable) -> list[str]:
    arguments = [("convex_table", py_string(table.convex_table))]
    if table.component:
        arguments.append(("component", py_string(table.component)))
    arguments.append(("pg_table", py_string(table.pg_table)))
    if table.pg_schema:
        arguments.append(("pg_schema", py_string(table.pg_schema)))
    if table.workspace_field:
        arguments.append(("workspace_field", py_string(table.workspace_field)))
    if table.document_only:
        arguments.append(("document_only", "True"))
    lines = [f"{_INDENT}mirror: ClassVar[MirrorTable] = MirrorTable("]
    inner = _INDENT * 2
    for key, value in arguments:
        lines.append(f"{inner}{key}={value},")
    if table.excluded:
        values = [py_string(v) for v in table.excluded]
        single = f"{inner}excluded=({values[0]},)," if len(values) == 1 else None
        joined = single or f"{inner}excluded=({', '.join(values)}),"
        if len(joined) <= LINE or len(values) == 1:
            lines.append(joined)
        else:
            lines += [
                f"{inner}excluded=(",
                *[f"{inner}{_INDENT}{v}," for v in values],
                f"{inner}),",
            ]
    lines.append(f"{_INDENT})")
    return lines


def _field_lines(plan: FieldPlan) -> list[str]:
    annotation = plan.annotation
    keywords: list[str] = []
    if plan.attribute != plan.convex_name:
        keywords = (["default=None"] if plan.nullable else []) + [
            f"alias={py_string(plan.convex_name)}"
        ]
    value = f"Field({', '.join(keywords)})" if keywords else ("None" if plan.nullable else "")
    assign = f" = {value}" if value else ""
    head = f"{_INDENT}{plan.attribute}: "
    line = head + annotation.inline() + assign
    if len(line) <= LINE:
        return [line]
    exploded_call = [*[f"{_INDENT * 2}{k}," for k in keywords], f"{_INDENT})"]
    if keywords and len(f"{head}{annotation.inline()} = Field(") <= LINE:
        return [f"{head}{annotation.inline()} = Field(", *exploded_call]
    if len(annotation.args) <= 1:
        return _one_argument_lines(head, annotation, assign, keywords)
    items = [f"{_INDENT * (3 if annotation.nullable else 2)}{a}," for a in annotation.args]
    if annotation.nullable:
        lines = [f"{head}(", f"{_INDENT * 2}{annotation.head}[", *items, f"{_INDENT * 2}]"]
        lines.append(f"{_INDENT * 2}| None")
        close = f"{_INDENT})"
    else:
        lines = [f"{head}{annotation.head}[", *items]
        close = f"{_INDENT}]"
    if keywords and len(close + assign) > LINE:
        return [*lines, f"{close} = Field(", *exploded_call]
    return [*lines, close + assign]


def _one_argument_lines(
    head: str, annotation: _Annotation, assign: str, keywords: list[str]
) -> list[str]:
    # A one-value Literal (a trailing comma in ``Literal["x",]`` does not keep
    # it split) or a plain type behind a very long renamed column: these are
    # the formatter's own choices at LINE columns, which a longer line length
    # would join again.
    inner = _INDENT * 2
    if keywords and len(f"{head}{annotation.inline()} = (") <= LINE:
        call = f"{inner}Field({', '.join(keywords)})"
        if len(call) > LINE:
            exploded = [f"{inner}{_INDENT}{k}," for k in keywords]
            return [
                f"{head}{annotation.inline()} = (",
                f"{inner}Field(",
                *exploded,
                f"{inner})",
                f"{_INDENT})",
            ]
        return [f"{head}{annotation.inline()} = (", call, f"{_INDENT})"]
    if not annotation.args:
        return [head + annotation.inline() + assign]  # nothing left to split
    if not annotation.nullable:
        lines = [f"{head}{annotation.head}[", f"{inner}{annotation.args[0]}"]
        close = f"{_INDENT}]"
    elif len(inner + annotation.inline()) <= LINE:
        lines = [f"{head}(", inner + annotation.inline()]
        close = f"{_INDENT})"
    elif len(f"{inner}{annotation.head}[{annotation.args[0]}]") <= LINE:
        lines = [f"{head}(", f"{inner}{annotation.head}[{annotation.args[0]}]", f"{inner}| None"]
        close = f"{_INDENT})"
    else:
        lines = [f"{head}(", f"{inner}{annotation.head}[", f"{inner}{_INDENT}{annotation.args[0]}"]
        lines += [f"{inner}]", f"{inner}| None"]
        close = f"{_INDENT})"
    if not keywords or len(close + assign) <= LINE:
        return [*lines, close + assign]
    joined = inner + ", ".join(keywords)
    if len(joined) <= LINE:
        return [*lines, f"{close} = Field(", joined, f"{_INDENT})"]
    return [*lines, f"{close} = Field(", *[f"{inner}{k}," for k in keywords], f"{_INDENT})"]


def generate_module(tables: Iterable[TableSchema], config: MirrorConfig, *, source: str) -> str:
    """The module of mirror models for ``tables`` as ``config`` selects and names them."""
    return render_module(plan_models(tables, config), source=source)
