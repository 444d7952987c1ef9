"""The mirror config file's errors, and the order a backfill copies tables in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

import pytest

from migrationkit.errors import ConfigurationError
from migrationkit.mirror import MirrorDocument, MirrorTable, RefersTo
from migrationkit.mirror.backfill import referenced_first
from migrationkit.mirror.config import load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "migrationkit.toml"
    path.write_text(text)
    return path


def test_a_full_config_is_read(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
            [mirror]
            schema = "billing"
            models = "gen/models.py"
            workspace_field = "teamId"
            exclude_tables = ["scratch"]

            [mirror.table.users]
            name = "app_users"
            exclude_fields = ["avatar"]
            rename = { email = "email_address" }
            foreign_keys = ["managerId"]
            """,
        )
    )
    assert config.schema_name == "billing"
    assert config.models == tmp_path / "gen" / "models.py"
    assert config.selects("users") and not config.selects("scratch")
    assert config.for_table("users").rename == {"email": "email_address"}
    assert config.unknown_tables({"users"}) == ["scratch"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[mirror]\nshema = "x"\n', "mirror.shema: unknown key"),
        ('[mirror.table.users]\nrenames = {a = "b"}\n', "mirror.table.users.renames: unknown key"),
        ('[mirror]\nschema = "Bad-Name"\n', "mirror.schema"),
        ('[mirror.table.users]\nrename = {email = "1x"}\n', "mirror.table.users.rename.email"),
        ('[mirror]\ntables = "users"\n', "mirror.tables"),
        ("[mirror\n", "not valid TOML"),
        ('[mirrors]\nschema = "x"\n', "mirrors: unknown key"),
    ],
)
def test_a_bad_config_names_the_key(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert named in str(caught.value)


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


class Post(MirrorDocument):
    mirror: ClassVar[MirrorTable] = MirrorTable(convex_table="posts", pg_table="posts")
    author: Annotated[str, RefersTo("users", foreign_key=True)]


class Comment(MirrorDocument):
    mirror: ClassVar[MirrorTable] = MirrorTable(convex_table="comments", pg_table="comments")
    post: Annotated[str, RefersTo("posts", foreign_key=True)]
    by: Annotated[str, RefersTo("users")]


class User(MirrorDocument):
    mirror: ClassVar[MirrorTable] = MirrorTable(convex_table="users", pg_table="users")
    name: str


def test_a_backfill_copies_the_targets_of_foreign_keys_first() -> None:
    order = [m.mirror.convex_table for m in referenced_first([Comment, Post, User])]
    assert order == ["users", "posts", "comments"]
    # Without foreign keys, name order.
    assert [m.mirror.convex_table for m in referenced_first([User, Comment])] == [
        "comments",
        "users",
    ]


def test_document_true_keeps_a_typed_table_whole_with_its_workspace() -> None:
    from migrationkit.mirror.config import MirrorConfig, TableConfig
    from migrationkit.mirror.convex_types import ConvexType, FieldType, TableSchema
    from migrationkit.mirror.model_codegen import plan_models

    scratch = TableSchema(
        "scratch",
        fields=(FieldType("teamId", ConvexType("string")), FieldType("n", ConvexType("int64"))),
    )
    config = MirrorConfig(workspace_field="teamId", table={"scratch": TableConfig(document=True)})
    (plan,) = plan_models([scratch], config)
    assert plan.mirror.document_only
    assert plan.mirror.workspace_field == "teamId"
    assert plan.fields == ()
    (typed,) = plan_models([scratch], MirrorConfig())
    assert not typed.mirror.document_only
    assert {f.attribute for f in typed.fields} == {"team_id", "n"}
