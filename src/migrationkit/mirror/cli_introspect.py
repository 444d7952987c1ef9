"""``migrationkit introspect``: write the mirror models of a deployment's tables.

The tables come from the deployment (``/api/json_schemas``, which needs
the deploy key in ``$CONVEX_DEPLOY_KEY``) or, with ``--zip``, from an export
ZIP read offline. When the deployment refuses ``json_schemas`` because a
table's documents have no object shape, the types are inferred from a
``list_snapshot`` instead (see ``introspect_snapshot``), with a warning.
The module goes to ``--out``, else to the config's ``models`` path.
``--check`` writes nothing and exits 1 when the file would change: run it
in CI to catch a schema that moved on without the mirror.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console
from rich.table import Table

from migrationkit.adapters.convex.client import ConvexClient
from migrationkit.errors import (
    ConfigurationError,
    PermissionDenied,
    StreamingExportNotEnabled,
    ValidationFailed,
)
from migrationkit.mirror.cli_support import (
    CONVEX_URL,
    ConfigOption,
    convex_client,
    mirror_config,
)
from migrationkit.mirror.config import MirrorConfig
from migrationkit.mirror.convex_types import TableSchema
from migrationkit.mirror.export_schema import schemas_from_export_zip
from migrationkit.mirror.introspect import tables_from_json_schemas
from migrationkit.mirror.introspect_snapshot import Refusal, tables_from_snapshot
from migrationkit.mirror.model_codegen import (
    ModelPlan,
    column_type_text,
    convex_type_text,
    plan_models,
    render_module,
)

__all__ = ["introspect", "register"]

_ZIP_ADVICE = (
    " Read the schema from an export instead: `npx convex export --path export.zip`,"
    " then `migrationkit introspect --zip export.zip`."
)


def register(app: typer.Typer) -> None:
    """Add the command to the ``migrationkit`` app."""
    app.command("introspect")(introspect)


def introspect(
    url: Annotated[
        str | None,
        # --convex-url too, the name `migrationkit backfill` gives it.
        typer.Option(
            "--url", "--convex-url", help=f"The deployment's URL; defaults to ${CONVEX_URL}."
        ),
    ] = None,
    zip_path: Annotated[
        Path | None,
        typer.Option("--zip", help="Read the tables from this export ZIP, offline."),
    ] = None,
    config_path: ConfigOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write the module (default: the config's models)."),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Write nothing; exit 1 if the module would change."),
    ] = False,
) -> None:
    """Write the mirror models (one pydantic model per Convex table).

    The deploy key is read from $CONVEX_DEPLOY_KEY only, never from a flag.
    """
    if url is not None and zip_path is not None:
        raise ConfigurationError("pass --url or --zip, not both")
    config = mirror_config(config_path)
    if zip_path is not None:
        tables = schemas_from_export_zip(zip_path)
        source = zip_path.name
    else:
        tables, source = _from_deployment(url, config)
    plans = plan_models(tables, config)
    text = render_module(plans, source=source)
    target = out or config.models
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
    if check:
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current != text:
            state = "does not exist" if current is None else "is out of date"
            typer.echo(
                f"error: {target} {state}: run `migrationkit introspect` and commit it", err=True
            )
            raise typer.Exit(1)
        console.print(f"{target} is up to date", highlight=False)
        return
    _print_summary(console, plans, tables, config)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    console.print(f"wrote {target} ({len(plans)} models)", highlight=False)


def _from_deployment(url: str | None, config: MirrorConfig) -> tuple[list[TableSchema], str]:
    url = url or os.environ.get(CONVEX_URL)
    if not url:
        raise ConfigurationError(f"{CONVEX_URL} is not set (or pass --url)")
    with convex_client(url) as client:
        try:
            payload = client.json_schemas(by_component=True)
        except StreamingExportNotEnabled:
            # The client's own advice is about copying data; here it is the schema.
            raise StreamingExportNotEnabled(
                "Convex refused json_schemas: streaming export is not enabled for this"
                " deployment (StreamingExportNotEnabled; on Convex Cloud it needs the Pro"
                f" plan).{_ZIP_ADVICE}"
            ) from None
        except PermissionDenied as exc:
            raise PermissionDenied(f"{exc}.{_ZIP_ADVICE}") from None
        except ValidationFailed as exc:
            refusal = Refusal.of(exc)
            if refusal is None:
                raise ValidationFailed(f"{exc}.{_ZIP_ADVICE}", exc.errors) from None
            return _from_snapshot(client, refusal, config), _source(url)
    return tables_from_json_schemas(payload), _source(url)


def _from_snapshot(
    client: ConvexClient, refusal: Refusal, config: MirrorConfig
) -> list[TableSchema]:
    """The real backend refuses the whole json_schemas request when one table's
    documents have no object shape; list_snapshot still answers."""
    named = set(config.tables or ()) | set(config.exclude_tables) | set(config.table)
    components = {name.rpartition("/")[0] for name in named if "/" in name}
    found = tables_from_snapshot(client, refusal, components=components, expected=named)
    whole = [t.qualified_name for t in found.tables if t.fallback is not None]
    unseen = f" (no document seen: {', '.join(found.unseen)})" if found.unseen else ""
    # One line: it must stand out from the summary on stdout, and grep well in CI logs.
    typer.echo(
        f"warning: Convex refused json_schemas ({refusal}), so the schema was inferred from"
        " the documents of a list_snapshot: v.id() fields become text (ids cannot be told"
        f" from strings); kept whole (document jsonb): {', '.join(whole) or 'none'}{unseen}",
        err=True,
    )
    return found.tables


def _source(url: str) -> str:
    """The URL as the module's header names it: no user, password or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _print_summary(
    console: Console, plans: list[ModelPlan], tables: list[TableSchema], config: MirrorConfig
) -> None:
    skipped = sorted(t.qualified_name for t in tables if not config.selects(t.qualified_name))
    if console.is_terminal:
        table = Table(title="Convex -> PostgreSQL")
        for header in ("Convex table -> PostgreSQL table", "field", "Convex type", "column"):
            table.add_column(header)
        for plan in plans:
            rows = [
                (
                    f.convex_name,
                    convex_type_text(f.convex_type),
                    f"{f.attribute} {column_type_text(f)}",
                )
                for f in plan.fields
            ] or [("", "", "document jsonb")]
            heads = [f"{plan.schema.qualified_name} -> {_pg_name(plan)}", *plan.notes]
            for number, row in enumerate(rows):
                table.add_row(heads[number] if number < len(heads) else "", *row)
            for extra in heads[len(rows) :]:
                table.add_row(extra, "", "", "")
            table.add_section()
        console.print(table)
    else:
        for plan in plans:
            head = f"{plan.schema.qualified_name} -> {_pg_name(plan)}"
            if plan.mirror.document_only:
                why = plan.schema.fallback or "document = true in the config"
                console.print(f"{head}: document jsonb ({why})", highlight=False)
                continue
            console.print(f"{head}: {len(plan.fields)} columns", highlight=False)
            for f in plan.fields:
                console.print(
                    f"  {f.convex_name}: {convex_type_text(f.convex_type)} -> {f.attribute}"
                    f" {column_type_text(f)}",
                    highlight=False,
                )
    if skipped:
        console.print(f"not mirrored (config): {', '.join(skipped)}", highlight=False)


def _pg_name(plan: ModelPlan) -> str:
    workspace = f" (workspace_id from {plan.mirror.workspace_field})"
    return plan.mirror.qualified_pg_name + (workspace if plan.mirror.workspace_field else "")
