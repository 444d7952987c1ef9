"""The generated mirror models module: stable bytes, formatted, importable, and
its tables what the type mapping promises."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import BigInteger, Boolean, CheckConstraint, Double, LargeBinary, MetaData, Text
from sqlalchemy.dialects.postgresql import JSONB

from migrationkit.errors import ConfigurationError
from migrationkit.mirror.config import MirrorConfig
from migrationkit.mirror.convex_types import ConvexType, FieldType, TableSchema
from migrationkit.mirror.introspect import NO_SCHEMA, UNSUPPORTED_SCHEMA
from migrationkit.mirror.loading import import_models
from migrationkit.mirror.model import (
    mirror_model_for,
    registered_mirrors,
    unregister_mirrors,
)
from migrationkit.mirror.model_codegen import generate_module, plan_models, snake_case
from migrationkit.schema.mirror_tables import mirror_table_for

T = ConvexType
STRING, FLOAT, INT, BOOL, BYTES, NULL, ANY = (
    T("string"),
    T("float64"),
    T("int64"),
    T("boolean"),
    T("bytes"),
    T("null"),
    T("any"),
)
ROLE = T("union", members=tuple(T("literal", value=v) for v in ("member", "admin", "guest")))
USER_ID = T("id", table="users")
LONG_LITERALS = T(
    "union", members=tuple(T("literal", value=f"value_number_{i:02}") for i in range(8))
)


def app_tables() -> list[TableSchema]:
    """An app with every kind of field and table."""
    users = TableSchema(
        "users",
        fields=(
            FieldType("name", STRING),
            FieldType("age", FLOAT, optional=True),
            FieldType("credits", INT),
            FieldType("active", BOOL),
            FieldType("avatar", BYTES, optional=True),
            FieldType("role", ROLE),
            FieldType("teamId", STRING),
            FieldType("managerId", T("union", members=(USER_ID, NULL))),
            FieldType("profile", T("object", fields=(FieldType("bio", STRING),))),
            FieldType("tags", T("array", items=STRING)),
            FieldType("scores", T("record", items=FLOAT)),
            FieldType("mixed", T("union", members=(FLOAT, STRING))),
            FieldType("anything", ANY),
            FieldType("one", T("literal", value="only")),
            FieldType("class", STRING),
            FieldType("id", STRING),
            FieldType("json", BOOL),
        ),
    )
    posts = TableSchema(
        "posts",
        fields=(
            FieldType("author", USER_ID),
            FieldType("teamId", STRING),
            FieldType("title", STRING),
            FieldType("secret", STRING),
            FieldType(
                "aVeryLongFieldNameThatIsUsedToCheckHowLinesAreSplitWhenTheyGetLong",
                T("union", members=(USER_ID, NULL)),
                optional=True,
            ),
            FieldType("longStatus", LONG_LITERALS),
            FieldType("longOptionalStatus", LONG_LITERALS, optional=True),
        ),
    )
    events = TableSchema("events", fallback=UNSUPPORTED_SCHEMA, notes=("a union of object types",))
    scratch = TableSchema("scratch", fallback=NO_SCHEMA, notes=("no schema",))
    limits = TableSchema(
        "limits",
        component="ratelimiter",
        fields=(FieldType("key", STRING), FieldType("resetAt", FLOAT), FieldType("count", INT)),
    )
    return [users, posts, events, scratch, limits]


def app_config(**overrides: Any) -> MirrorConfig:
    raw: dict[str, Any] = {
        "schema": "app_convex",
        "workspace_field": "teamId",
        "table": {
            "users": {"foreign_keys": ["managerId"]},
            "posts": {"foreign_keys": ["author"], "exclude_fields": ["secret"]},
        },
    }
    raw.update(overrides)
    return MirrorConfig.model_validate(raw)


def shuffled(tables: list[TableSchema], seed: int) -> list[TableSchema]:
    r = random.Random(seed)
    out = []
    for table in tables:
        fields = []
        for f in table.fields:
            members = list(f.type.members)
            r.shuffle(members)
            fields.append(replace(f, type=replace(f.type, members=tuple(members))))
        r.shuffle(fields)
        out.append(replace(table, fields=tuple(fields)))
    r.shuffle(out)
    return out


@pytest.fixture
def loaded(tmp_path: Path) -> Iterator[Path]:
    """The app's module written to a file and imported; its models forgotten after."""
    before = set(registered_mirrors())
    path = tmp_path / "convex_models.py"
    path.write_text(generate_module(app_tables(), app_config(), source="test"))
    import_models(path)
    yield path
    unregister_mirrors([m for m in registered_mirrors() if m not in before])


def test_the_same_input_gives_the_same_bytes_in_any_order() -> None:
    first = generate_module(app_tables(), app_config(), source="https://x.convex.cloud")
    assert generate_module(app_tables(), app_config(), source="https://x.convex.cloud") == first
    for seed in range(5):
        again = generate_module(
            shuffled(app_tables(), seed), app_config(), source="https://x.convex.cloud"
        )
        assert again == first
    assert first.startswith("# Generated by `migrationkit introspect` from https://x.convex.cloud.")
    assert "20" not in first.splitlines()[0]  # no date or time in the header


def ruff() -> str:
    found = Path(sys.executable).with_name("ruff")
    if found.is_file():
        return str(found)
    on_path = shutil.which("ruff")
    if on_path is None:
        pytest.skip("ruff is not installed")
    return on_path


@pytest.mark.parametrize("line_length", [None, 100, 120])
def test_the_module_is_already_formatted(tmp_path: Path, line_length: int | None) -> None:
    path = tmp_path / "convex_models.py"
    path.write_text(generate_module(app_tables(), app_config(), source="test"))
    length = [] if line_length is None else ["--line-length", str(line_length)]
    checked = subprocess.run(
        [ruff(), "format", "--isolated", "--check", "--diff", *length, str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    linted = subprocess.run(
        [ruff(), "check", "--isolated", "--select", "E,F,W,I,UP,B", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def random_tables(seed: int) -> list[TableSchema]:
    """Tables with names and types of every length, to find a line the formatter would move."""
    r = random.Random(seed)
    kinds = [STRING, INT, USER_ID, ROLE, LONG_LITERALS, ANY, T("union", members=(USER_ID, NULL))]
    tables = []
    for t in range(4):
        fields = []
        for i in range(40):
            name = "".join(r.choice("abcdefghXYZ") for _ in range(r.randrange(1, 70))) + str(i)
            values = tuple(
                T("literal", value="v" * r.randrange(1, 30) + str(j))
                for j in range(r.randrange(1, 6))
            )
            # One-value literals are split the formatter's own way, kept at 88
            # only: see test_a_long_one_value_literal_is_formatted.
            kind = r.choice([*kinds, T("union", members=values)]) if len(values) > 1 else STRING
            fields.append(FieldType(name, kind, optional=r.random() < 0.5))
        long_table = "t" * r.randrange(1, 60)
        tables.append(TableSchema(f"{long_table}{t}", fields=tuple(fields)))
    tables.append(TableSchema("users", fields=(FieldType("name", STRING),)))
    return tables


@pytest.mark.parametrize("seed", range(3))
def test_lines_of_any_length_stay_formatted(tmp_path: Path, seed: int) -> None:
    tables = random_tables(seed)
    excluded = [f.name for f in tables[0].fields[:12]]
    config = MirrorConfig.model_validate(
        {"schema": "s", "table": {tables[0].name: {"exclude_fields": excluded}}}
    )
    path = tmp_path / "models.py"
    path.write_text(generate_module(tables, config, source="test"))
    for length in ("88", "100", "120"):
        checked = subprocess.run(
            [
                ruff(),
                "format",
                "--isolated",
                "--check",
                "--diff",
                "--line-length",
                length,
                str(path),
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    before = set(registered_mirrors())
    try:
        import_models(path)
    finally:
        unregister_mirrors([m for m in registered_mirrors() if m not in before])


@pytest.mark.parametrize("seed", range(4))
def test_one_value_literals_and_long_renames_are_formatted_at_88(tmp_path: Path, seed: int) -> None:
    # Constructs split the formatter's own way (no trailing comma keeps them).
    r = random.Random(seed)
    fields, rename = [], {}
    for i in range(150):
        name = "".join(r.choice("abcXY") for _ in range(r.randrange(1, 70))) + str(i)
        kind = r.choice([T("literal", value="v" * r.randrange(1, 90)), STRING, BYTES, ANY])
        fields.append(FieldType(name, kind, optional=r.random() < 0.5))
        if r.random() < 0.3:
            rename[name] = "r" * r.randrange(40, 60) + str(i)
    config = MirrorConfig.model_validate({"table": {"t": {"rename": rename}}})
    path = tmp_path / "models.py"
    path.write_text(generate_module([TableSchema("t", fields=tuple(fields))], config, source="x"))
    checked = subprocess.run(
        [ruff(), "format", "--isolated", "--check", "--diff", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_long_constructs_are_split_with_trailing_commas() -> None:
    text = generate_module(app_tables(), app_config(), source="test")
    assert "    long_status: Literal[\n" in text
    assert '        "value_number_07",\n    ] = Field(alias="longStatus")\n' in text
    assert "    long_optional_status: (\n        Literal[\n" in text
    assert all(len(line) <= 88 for line in text.splitlines() if not line.startswith("#"))


def test_the_generated_module_imports_and_its_tables_have_the_mapped_columns(
    loaded: Path,
) -> None:
    users = mirror_model_for("users")
    posts = mirror_model_for("posts")
    metadata = MetaData()
    users_table = mirror_table_for(users, metadata)
    posts_table = mirror_table_for(posts, metadata)
    assert users_table.schema == "app_convex"
    columns = {c.name: type(c.type) for c in users_table.columns}
    assert columns == {
        "_id": Text,
        "_creation_time": columns["_creation_time"],
        "_creation_time_ms": Double,
        "_ts": BigInteger,
        "_deleted": Boolean,
        "workspace_id": Text,
        "active": Boolean,
        "age": Double,
        "anything": JSONB,
        "avatar": LargeBinary,
        "class_": Text,
        "credits": BigInteger,
        "id_": Text,
        "json_": Boolean,
        "manager_id": Text,
        "mixed": JSONB,
        "name": Text,
        "one": Text,
        "profile": JSONB,
        "role": Text,
        "scores": JSONB,
        "tags": JSONB,
        "team_id": Text,
    }
    checks = {str(c.sqltext) for c in users_table.constraints if isinstance(c, CheckConstraint)}
    assert "\"role\" IN ('admin', 'guest', 'member')" in checks
    assert "\"one\" IN ('only')" in checks
    indexes = {tuple(c.name for c in i.columns) for i in posts_table.indexes}
    assert ("author",) in indexes and ("workspace_id",) in indexes
    keys = {(fk.parent.name, fk.target_fullname) for fk in posts_table.foreign_keys}
    assert keys == {("author", "app_convex.users._id")}
    assert "secret" not in posts_table.c and posts.mirror.excluded == ("secret",)
    # Aliases carry the Convex names; documents validate through them.
    doc = users.model_validate(
        {"_id": "u1", "_creationTime": 1.5, "teamId": "t", "class": "c", "id": "x", "json": True}
        | {"name": "n", "credits": 1, "active": True, "role": "admin", "managerId": None}
        | {"profile": {}, "tags": [], "scores": {}, "mixed": 1.0, "one": "only"}
    )
    assert doc.model_dump()["class_"] == "c"


def test_fallback_and_component_tables(loaded: Path) -> None:
    events = mirror_model_for("events").mirror
    assert events.document_only and events.workspace_field is None
    events_table = mirror_table_for(mirror_model_for("events"), MetaData())
    assert "document" in events_table.c and type(events_table.c.document.type) is JSONB
    limits = mirror_model_for("ratelimiter/limits")
    assert limits.mirror.component == "ratelimiter" and limits.mirror.pg_table == "limits"
    assert limits.__name__ == "RatelimiterLimits"
    text = loaded.read_text()
    assert "UnsupportedSchemaForExport (a union of object types)" in text


def names(plan_fields: Any) -> dict[str, str]:
    return {f.convex_name: f.attribute for f in plan_fields}


def test_field_names_become_safe_distinct_columns() -> None:
    convex_names = ["userId", "user_id", "HTTPCode", "2fa", "model_x", "a-b c", "é", "mirror"]
    convex_names.append("workspaceId")
    table = TableSchema(
        "t",
        fields=tuple(FieldType(n, STRING) for n in convex_names),
    )
    config = MirrorConfig.model_validate({"workspace_field": "workspaceId"})
    (plan,) = plan_models([table], config)
    assert names(plan.fields) == {
        "2fa": "f_2fa",
        "HTTPCode": "http_code",
        "a-b c": "a_b_c",
        "mirror": "mirror_",
        "model_x": "model_x_",
        # Sorted by Convex name, so the first to ask keeps the plain name.
        "userId": "user_id",
        "user_id": "user_id_2",
        "workspaceId": "workspace_id_2",  # workspace_id is the RLS column
        "é": "field",
    }
    assert plan.mirror.workspace_field == "workspaceId"
    assert snake_case("createdAtMs") == "created_at_ms"


def test_renames_win_and_component_tables_that_collide_get_prefixed() -> None:
    users = TableSchema("users", fields=(FieldType("email", STRING), FieldType("mail", STRING)))
    other = TableSchema("users", component="auth", fields=(FieldType("x", STRING),))
    config = MirrorConfig.model_validate({"table": {"users": {"rename": {"mail": "email"}}}})
    plans = plan_models([users, other], config)
    assert [p.mirror.pg_table for p in plans] == ["auth_users", "users"]
    assert names(plans[1].fields) == {"mail": "email", "email": "email_2"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"tables": ["users", "missing"]}, "does not have: missing"),
        ({"exclude_tables": ["nope"]}, "does not have: nope"),
        (
            {"table": {"users": {"exclude_fields": ["avatr"]}}},
            "table.users.exclude_fields: no field 'avatr'",
        ),
        ({"table": {"users": {"rename": {"nam": "x"}}}}, "table.users.rename: no field 'nam'"),
        (
            {"table": {"users": {"rename": {"name": "json"}}}},
            "'name' -> 'json': that name is reserved",
        ),
        ({"table": {"users": {"rename": {"name": "x", "tags": "x"}}}}, "already taken"),
        ({"table": {"users": {"foreign_keys": ["name"]}}}, "'name' is not a v.id() field"),
        (
            {"tables": ["posts"], "table": {"posts": {"foreign_keys": ["author"]}}},
            "'author' refers to users, which is not mirrored",
        ),
        ({"table": {"users": {"workspace_field": "orgId"}}}, "'orgId' is not a field"),
        ({"table": {"users": {"workspace_field": "credits"}}}, "holds v.int64(), not strings"),
        ({"table": {"events": {"rename": {"a": "b"}}}}, "the table has no known fields"),
        ({"table": {"posts": {"name": "users"}}}, "would both be PostgreSQL table 'users'"),
    ],
)
def test_config_mistakes_name_what_is_wrong(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        plan_models(app_tables(), MirrorConfig.model_validate(config))
    assert message in str(caught.value)


def test_a_global_workspace_field_applies_only_where_it_holds_strings() -> None:
    table = TableSchema("t", fields=(FieldType("teamId", INT),))
    (plan,) = plan_models([table], MirrorConfig.model_validate({"workspace_field": "teamId"}))
    assert plan.mirror.workspace_field is None
    assert any("No workspace_id" in note for note in plan.notes)


def test_selection_and_exclusion() -> None:
    config = MirrorConfig.model_validate({"exclude_tables": ["scratch", "ratelimiter/limits"]})
    plans = plan_models(app_tables(), config)
    assert [p.schema.qualified_name for p in plans] == ["events", "posts", "users"]
