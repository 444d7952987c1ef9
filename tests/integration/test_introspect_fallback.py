"""`migrationkit introspect` when the deployment refuses json_schemas as a whole:
the tables are inferred from a list_snapshot; without streaming export at all,
one line names the way out."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.testing.convex_backend import LocalConvexBackend

from .testapp_support import CONFIG, migrationkit, seed


@pytest.fixture
def testapp(testapp: LocalConvexBackend) -> LocalConvexBackend:
    """The shared test app, emptied and seeded: introspection reads the shapes stored."""
    testapp.reset()
    with ConvexClient(testapp.url, admin_key=testapp.admin_key) as client:
        seed(client, users=4, posts=4)
    return testapp


@pytest.fixture
def backend(testapp: LocalConvexBackend) -> Iterator[LocalConvexBackend]:
    """The test app, answering json_schemas and streaming export again afterwards."""
    yield testapp
    testapp.refuse_json_schemas(None)
    testapp.set_streaming_export(True)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "migrationkit.toml").write_text(CONFIG)
    return tmp_path


def introspect(
    backend: LocalConvexBackend, workdir: Path, out: str, *extra: str
) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CONVEX_URL", "CONVEX_DEPLOY_KEY")}
    env["CONVEX_DEPLOY_KEY"] = backend.admin_key
    done = migrationkit(
        "introspect", "--url", backend.url, "--out", out, *extra, env=env, cwd=workdir
    )
    assert backend.admin_key not in done.stdout + done.stderr
    return done.returncode, done.stdout, done.stderr


def classes(module: str) -> dict[str, str]:
    """Class name -> its text, from the generated module."""
    found = re.split(r"\n\n\n@register_mirror\nclass (\w+)\(MirrorDocument\):\n", module)
    return dict(zip(found[1::2], found[2::2], strict=True))


def body(text: str) -> str:
    """A class without its docstring: what the table stores."""
    return text[text.index("    mirror: ClassVar") :]


@pytest.mark.parametrize("code", ["UnsupportedSchemaForExport", "NoTableDefinitionForExport"])
def test_the_table_the_refusal_names_is_kept_whole_and_the_rest_typed(
    backend: LocalConvexBackend, workdir: Path, code: str
) -> None:
    status, _, stderr = introspect(backend, workdir, "schemas.py")
    assert status == 0, stderr
    from_schemas = classes((workdir / "schemas.py").read_text())

    backend.refuse_json_schemas(code, "events")
    status, stdout, stderr = introspect(backend, workdir, "m.py")
    assert status == 0, stderr
    assert stderr.splitlines() == [
        f'warning: Convex refused json_schemas ({code}, table "events"), so the schema was'
        " inferred from the documents of a list_snapshot: v.id() fields become text (ids"
        " cannot be told from strings); kept whole (document jsonb): events"
    ]
    assert f"events -> app_convex.events: document jsonb ({code})" in stdout
    assert "users -> app_convex.users (workspace_id from teamId): 8 columns" in stdout
    module = (workdir / "m.py").read_text()
    models = classes(module)
    assert sorted(models) == ["Events", "Posts", "RatelimiterLimits", "Scratch", "Users"]
    assert "document_only=True" in models["Events"]
    assert f"{code} (json_schemas refused it" in models["Events"]
    for name in ("Posts", "RatelimiterLimits", "Users"):
        assert "document_only" not in models[name], name
        assert "v.id() fields are plain strings" in models[name]
    # Inferred from the documents, the tables come out as json_schemas describes
    # them, but for ids: plain text, with no reference.
    assert body(models["Users"]) == body(from_schemas["Users"])
    assert body(models["RatelimiterLimits"]) == body(from_schemas["RatelimiterLimits"])
    assert body(models["Posts"]) == body(from_schemas["Posts"]).replace(
        'author: Annotated[str, RefersTo("users")]', "author: str"
    )

    # The same documents give the same file, so --check holds.
    status, _, _ = introspect(backend, workdir, "again.py")
    assert status == 0 and (workdir / "again.py").read_text() == module
    status, stdout, _ = introspect(backend, workdir, "m.py", "--check")
    assert status == 0 and "m.py is up to date" in stdout


def test_a_refusal_naming_no_table_infers_every_table(
    backend: LocalConvexBackend, workdir: Path
) -> None:
    backend.refuse_json_schemas("NoSchemaForExport")
    status, stdout, stderr = introspect(backend, workdir, "m.py")
    assert status == 0, stderr
    assert stderr.splitlines() == [
        "warning: Convex refused json_schemas (NoSchemaForExport), so the schema was inferred"
        " from the documents of a list_snapshot: v.id() fields become text (ids cannot be"
        " told from strings); kept whole (document jsonb): none"
    ]
    assert "events -> app_convex.events: 4 columns" in stdout
    assert "  kind: v.string() -> kind text" in stdout
    assert "  page: v.string() -> page text, null" in stdout
    models = classes((workdir / "m.py").read_text())
    assert "document_only" not in models["Events"]
    assert "    kind: str\n" in models["Events"]
    # `document = true` in the config still keeps scratch whole.
    assert "document_only=True" in models["Scratch"]


def test_a_config_table_with_no_document_is_kept_whole(
    backend: LocalConvexBackend, tmp_path: Path
) -> None:
    (tmp_path / "migrationkit.toml").write_text(
        CONFIG + '\n[mirror.table."ratelimiter/unused"]\nname = "unused_limits"\n'
    )
    backend.refuse_json_schemas("UnsupportedSchemaForExport", "events")
    status, stdout, stderr = introspect(backend, tmp_path, "m.py")
    assert status == 0, stderr
    assert stderr.rstrip().endswith(
        "kept whole (document jsonb): events, ratelimiter/unused"
        " (no document seen: ratelimiter/unused)"
    )
    assert "ratelimiter/unused -> app_convex.unused_limits: document jsonb" in stdout


def test_without_streaming_export_one_line_names_the_export_zip(
    backend: LocalConvexBackend, workdir: Path
) -> None:
    backend.set_streaming_export(False)
    status, stdout, stderr = introspect(backend, workdir, "m.py")
    assert status == 2
    assert len(stderr.splitlines()) == 1
    assert stderr.startswith("error: ")
    assert "StreamingExportNotEnabled" in stderr
    assert "npx convex export --path export.zip" in stderr
    assert "migrationkit introspect --zip export.zip" in stderr
    assert stdout == ""
    assert not (workdir / "m.py").exists()
