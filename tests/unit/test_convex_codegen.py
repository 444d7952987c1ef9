"""The Convex codegen: committed output is what the models generate, to the byte."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel

from migrationkit.domain import Entity, Lead
from migrationkit.errors import ConfigurationError
from migrationkit.schema import convex_codegen
from migrationkit.schema.convex_fields import camel_case, convex_type

FUNCTIONS = Path(__file__).resolve().parents[2] / "convex" / "functions"


def test_committed_functions_match_the_models_byte_for_byte(tmp_path: Path) -> None:
    written = convex_codegen.write(tmp_path)
    assert {p.name for p in written} == {"schema.ts", "leads.ts", "outbox.ts", "migrationkit.ts"}
    for path in written:
        committed = FUNCTIONS / path.name
        assert committed.read_bytes() == path.read_bytes(), (
            f"{committed} is stale: run `migrationkit codegen convex --out convex/functions`"
        )


def test_regenerating_is_deterministic() -> None:
    assert convex_codegen.generate() == convex_codegen.generate()


def test_cli_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    shutil.copytree(FUNCTIONS, tmp_path / "functions")
    target = tmp_path / "functions"
    command = [sys.executable, "-m", "migrationkit.cli", "codegen", "convex", "--out", str(target)]
    assert subprocess.run([*command, "--check"], capture_output=True).returncode == 0
    (target / "leads.ts").write_text("// edited by hand\n")
    result = subprocess.run([*command, "--check"], capture_output=True, text=True)
    assert result.returncode == 1 and "leads.ts" in result.stderr
    assert subprocess.run(command, capture_output=True).returncode == 0
    assert (target / "leads.ts").read_bytes() == (FUNCTIONS / "leads.ts").read_bytes()


def test_lead_validators_follow_the_model() -> None:
    schema = convex_codegen.schema_ts([Lead])
    assert "  workspaceId: v.string(),\n" in schema
    assert "  createdAt: v.number(),\n" in schema  # milliseconds since the epoch
    assert '"startup"), v.literal("enterprise"), v.literal("smb"), v.null()' in schema
    assert "  tags: v.optional(v.array(v.string())),\n" in schema
    assert "notes: v.optional(v.record(v.string(), v.string()))" in schema
    assert '.index("by_workspace_id", ["workspaceId", "id"])' in schema
    assert '.index("by_workspaceId_segment", ["workspaceId", "segment"])' in schema
    assert '.index("by_status", ["status"])' in schema  # pending outbox events


def test_write_functions_record_their_event_in_the_same_mutation() -> None:
    module = convex_codegen.entity_module_ts(Lead)
    for function in ("upsert", "remove"):
        body = module.split(f"export const {function} = internalMutation(")[1].split("\n});")[0]
        assert "version" in body and "await recordEvent(ctx," in body
    assert (
        "internalQuery" in module and "export const get" in module and "export const list" in module
    )


def test_the_fingerprint_covers_every_other_generated_file() -> None:
    files = convex_codegen.generate()
    served = files[convex_codegen.FINGERPRINT_MODULE]
    stamp = convex_codegen.fingerprint(files)
    assert stamp.startswith("sha256:") and f'FINGERPRINT = "{stamp}"' in served
    assert 'FILES = ["leads.ts", "outbox.ts", "schema.ts"]' in served
    assert "export const fingerprint = internalQuery(" in served
    # Any byte of any other file moves it; the module itself does not count.
    for name in ("leads.ts", "outbox.ts", "schema.ts"):
        assert convex_codegen.fingerprint(files | {name: files[name] + " "}) != stamp
    assert convex_codegen.fingerprint(files | {"migrationkit.ts": ""}) == stamp
    # Names count too: the same text under another name is another deployment.
    moved = {("leads2.ts" if k == "leads.ts" else k): v for k, v in files.items()}
    assert convex_codegen.fingerprint(moved) != stamp


def test_an_entity_cannot_take_a_generated_module_name() -> None:
    class Clash(Entity):
        entity_name: ClassVar[str] = "clash"
        table_name: ClassVar[str] = "outbox"

    with pytest.raises(ConfigurationError, match=r"outbox\.ts"):
        convex_codegen.generate([Clash])


class Nested(BaseModel):
    when: list[int] = []


def test_every_supported_type_has_a_validator() -> None:
    class Thing(Entity):
        entity_name: ClassVar[str] = "thing"
        table_name: ClassVar[str] = "things"
        count: int
        ratio: float | None = None
        nested: Nested
        labels: dict[str, list[str]] = {}

    schema = convex_codegen.schema_ts([Thing])
    assert "  count: v.number(),\n" in schema
    assert "  ratio: v.optional(v.union(v.number(), v.null())),\n" in schema
    assert "    when: v.optional(v.array(v.number())),\n" in schema
    assert "  labels: v.optional(v.record(v.string(), v.array(v.string()))),\n" in schema
    assert convex_codegen.entity_module_ts(Thing).count('"things"') >= 2


def test_unsupported_types_are_refused() -> None:
    with pytest.raises(TypeError):
        convex_type(bytes)
    with pytest.raises(TypeError):
        convex_type(dict[int, str])


@pytest.mark.parametrize(
    ("name", "expected"), [("workspace_id", "workspaceId"), ("id", "id"), ("a_b_c", "aBC")]
)
def test_camel_case(name: str, expected: str) -> None:
    assert camel_case(name) == expected
