"""The documentation says what the code does: it fails when either drifts.

- every command of ``migrationkit`` has its page in docs/commands/, which
  names every subcommand, and every page there is a command's;
- every ``migrationkit ...`` command line in a fenced code block of
  README.md and docs/**/*.md names a real command, and every option on it
  exists on that command (``python -m migrationkit.worker`` lines too);
- docs/commands/worker.md names exactly the worker's environment variables
  (``WorkerSettings``: field names and validation aliases);
- docs/metrics.md names every metric the kit exports, with its type, labels,
  dashboard panels and alerts, and names no metric the kit does not export.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from prometheus_client import CollectorRegistry
from pydantic import AliasChoices
from typer.core import TyperGroup

from migrationkit.cli import app
from migrationkit.observability.metrics import CutoverMetrics, PipelineMetrics
from migrationkit.observability.stage_metrics import StageCollector
from migrationkit.observability.verify_metrics import VerifyCollector
from migrationkit.outbox.settings import WorkerSettings

from .test_grafana_dashboard import exported_names

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
COMMANDS_DIR = DOCS / "commands"
METRICS_DOC = DOCS / "metrics.md"
WORKER_DOC = COMMANDS_DIR / "worker.md"
DASHBOARD = DOCS / "grafana" / "migrationkit.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

ROOT_COMMAND = typer.main.get_command(app)
assert isinstance(ROOT_COMMAND, TyperGroup)


def command_paths(group: TyperGroup, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path below ``group``, groups included (as in test_entry_points)."""
    paths = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        paths.append(path)
        if isinstance(command, TyperGroup):
            paths += command_paths(command, path)
    return paths


COMMAND_PATHS = command_paths(ROOT_COMMAND)
TOP_LEVEL = sorted(path[0] for path in COMMAND_PATHS if len(path) == 1)


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


# -- one page per command ------------------------------------------------------


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_every_command_has_a_page_naming_its_subcommands(name: str) -> None:
    page = COMMANDS_DIR / f"{name}.md"
    assert page.is_file(), f"`migrationkit {name}` has no page: write {page.relative_to(ROOT)}"
    text = page.read_text()
    assert f"migrationkit {name}" in text
    for path in COMMAND_PATHS:
        if path[0] == name and len(path) > 1:
            spelled = "migrationkit " + " ".join(path)
            assert spelled in text, f"{page.relative_to(ROOT)} does not mention `{spelled}`"


def test_every_page_is_a_command_and_the_index_links_them_all() -> None:
    pages = {p.stem for p in COMMANDS_DIR.glob("*.md")} - {"README"}
    # worker.md is `migrationkit worker` and `python -m migrationkit.worker` both.
    assert pages == set(TOP_LEVEL), "pages without a command, or commands without a page"
    index = (COMMANDS_DIR / "README.md").read_text()
    for name in TOP_LEVEL:
        assert f"]({name}.md)" in index, f"docs/commands/README.md does not link {name}.md"


# -- command lines in code blocks ----------------------------------------------

#: Fenced blocks in these languages hold shell commands. A `console` block's
#: commands are its `$ ` lines (the rest is their output); every line of the
#: others is a command. Blocks in other languages (python, ts, toml, text
#: output...) hold no command lines.
SHELL_LANGUAGES = {"", "console", "shell", "sh", "bash", "zsh"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
SEPARATORS = {"&&", "||", ";", "|"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SHORT_OPTION = re.compile(r"^-[A-Za-z]$")
#: A placeholder where a subcommand would be (`migrationkit COMMAND --help`,
#: `migrationkit <command>`): the line shows the form of every command, so
#: there is no one command to check it against. Nothing else is skipped.
PLACEHOLDER = re.compile(r"^(<[^>]+>|[A-Z][A-Z_]*)$")


@dataclass(frozen=True)
class CommandLine:
    where: str
    tokens: list[str]  # after `migrationkit` (or `python -m migrationkit.cli`)
    program: str  # "cli" or "worker"

    def __str__(self) -> str:
        return f"{self.where}: {' '.join(self.tokens)}"


def shell_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The shell command lines of a file's fenced blocks, continuations joined."""
    language: str | None = None  # None: outside any block
    fence = ""
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        opened = FENCE.match(raw)
        if language is None:
            if opened:
                language, fence = opened.group(3).lower(), opened.group(2)
            continue
        if raw.strip().startswith(fence) and raw.strip().strip(fence[0]) == "":
            language, pending = None, None
            continue
        if language not in SHELL_LANGUAGES:
            continue
        line = raw.strip()
        if pending is not None:
            start, text = pending
            line = f"{text} {line}"
        elif language == "console":
            if not line.startswith("$ "):
                continue  # the output of the command above
            start, line = number, line[2:]
        else:
            start = number
        if line.endswith("\\"):
            pending = (start, line[:-1].rstrip())
            continue
        pending = None
        yield start, line


def segments(line: str) -> Iterator[list[str]]:
    """The simple commands of a shell line: split at `&&`, `||`, `;` and pipes.

    A `|` inside `[...]` is not a pipe: `[--entity lead | --table users]`
    shows alternatives."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote in an example: read it plainly
        tokens = line.split("#", 1)[0].split()
    current: list[str] = []
    depth = 0
    for token in tokens:
        if token in SEPARATORS and not (token == "|" and depth > 0):
            yield current
            current = []
            continue
        depth += token.count("[") - token.count("]")
        current.append(token)
    yield current


def command_lines() -> list[CommandLine]:
    found = []
    for path in doc_files():
        for number, line in shell_lines(path):
            for words in segments(line):
                while words and ASSIGNMENT.match(words[0]):
                    words = words[1:]  # VAR=value before the command
                where = f"{path.relative_to(ROOT)}:{number}"
                if words[:1] == ["migrationkit"]:
                    found.append(CommandLine(where, words[1:], "cli"))
                elif words[:3] == ["python", "-m", "migrationkit.cli"]:
                    found.append(CommandLine(where, words[3:], "cli"))
                elif words[:3] == ["python", "-m", "migrationkit.worker"]:
                    found.append(CommandLine(where, words[3:], "worker"))
    return found


COMMAND_LINES = command_lines()


def options_of(command: Any) -> set[str]:
    """Every option name of a command (typer's click-like object)."""
    names = {"--help"}
    for param in command.params:
        if param.param_type_name == "option":  # an argument's opts are its name
            names.update(param.opts, param.secondary_opts)
    return names


def option_words(tokens: list[str]) -> Iterator[str]:
    """The options a line passes: `--x`, `[--x`, `--x=1`, `-m`."""
    for token in tokens:
        word = token.lstrip("[{(").rstrip("]})").split("=", 1)[0]
        if (word.startswith("--") and len(word) > 2) or SHORT_OPTION.match(word):
            yield word


def resolve(line: CommandLine) -> tuple[Any, list[str]] | None:
    """The command a line names and the words after its name; None for a placeholder."""
    command: Any = ROOT_COMMAND
    tokens = list(line.tokens)
    while isinstance(command, TyperGroup) and tokens:
        word = tokens[0]
        if word.startswith("-") or word.startswith("["):
            break  # the group's own options (--help, --version)
        if PLACEHOLDER.match(word):
            return None
        sub = command.commands.get(word)
        under = " ".join(("migrationkit", *line.tokens[: len(line.tokens) - len(tokens)]))
        assert sub is not None, f"{line}: `{under}` has no command {word!r}"
        command, tokens = sub, tokens[1:]
    return command, tokens


def test_the_docs_show_command_lines() -> None:
    # The parser finds the lines (so the checks below are not vacuous).
    shown = {" ".join(c.tokens[:2]) for c in COMMAND_LINES if c.program == "cli"}
    assert {"db upgrade", "cutover set", "dlq replay"} <= shown
    assert any(c.program == "worker" for c in COMMAND_LINES)


@pytest.mark.parametrize("line", COMMAND_LINES, ids=str)
def test_every_documented_command_line_exists(line: CommandLine) -> None:
    if line.program == "worker":
        # `python -m migrationkit.worker` is configured from the environment only.
        unknown = set(option_words(line.tokens)) - {"--help", "--version"}
        assert not unknown, f"{line}: the worker takes no option {sorted(unknown)}"
        return
    resolved = resolve(line)
    if resolved is None:
        return
    command, rest = resolved
    known = options_of(command)
    unknown = [word for word in option_words(rest) if word not in known]
    assert not unknown, f"{line}: {command.name} has no option {unknown}; it has {sorted(known)}"


# -- the worker's environment --------------------------------------------------

VARIABLE = re.compile(r"\b(?:MIGRATIONKIT|CONVEX)_[A-Z0-9_]*[A-Z0-9]\b")


def worker_variables() -> set[str]:
    prefix = str(WorkerSettings.model_config.get("env_prefix", ""))
    names = set()
    for field, info in WorkerSettings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{field}".upper())
    return names


def test_the_worker_page_names_exactly_the_worker_settings() -> None:
    known = worker_variables()
    assert {"MIGRATIONKIT_DATABASE_URL", "CONVEX_URL", "MIGRATIONKIT_SOURCE"} <= known
    named = set(VARIABLE.findall(WORKER_DOC.read_text()))
    assert named - known == set(), "docs/commands/worker.md names variables the worker ignores"
    assert known - named == set(), "docs/commands/worker.md leaves worker settings out"


# -- the metrics reference -----------------------------------------------------

METRIC = re.compile(r"\bmigrationkit_[a-z0-9_]*[a-z0-9]\b")
PROMQL = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class Family:
    name: str  # as a section of docs/metrics.md is titled
    type: str
    labels: tuple[str, ...]
    series: tuple[str, ...]  # the names Prometheus shows


class _OneRow:
    """Stands for an engine whose one query returns ``row``: a collector then
    yields a sample, whose labels are the family's."""

    def __init__(self, row: tuple[object, ...]) -> None:
        self.row = row

    def connect(self) -> _OneRow:
        return self

    def __enter__(self) -> _OneRow:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, _statement: object) -> _OneRow:
        return self

    def all(self) -> list[tuple[object, ...]]:
        return [self.row]


def families() -> list[Family]:
    registry = CollectorRegistry()
    declared: dict[str, tuple[str, ...]] = {}
    for metrics in (PipelineMetrics(registry), CutoverMetrics(registry)):
        for value in vars(metrics).values():
            if hasattr(value, "_labelnames"):  # a labelled metric has no sample to show them
                declared[value._name] = tuple(value._labelnames)
    registry.register(VerifyCollector(_OneRow(("users", 0, 0, True, 1.0))))  # type: ignore[arg-type]
    registry.register(StageCollector(_OneRow(("*", "*", "pg_reads"))))  # type: ignore[arg-type]
    found = []
    for family in registry.collect():
        if family.type == "counter":
            name, series = f"{family.name}_total", (f"{family.name}_total",)
        elif family.type == "histogram":
            name = family.name
            series = tuple(f"{family.name}_{s}" for s in ("bucket", "sum", "count"))
        else:
            name, series = family.name, (family.name,)
        labels = declared.get(family.name)
        if labels is None:
            labels = tuple(family.samples[0].labels) if family.samples else ()
        found.append(Family(name, family.type, labels, series))
    return found


FAMILIES = families()


def sections(text: str) -> dict[str, str]:
    """docs/metrics.md's `### `name`` sections, by name, each up to the next heading."""
    found = {}
    for part in re.split(r"^(?=#{1,3} )", text, flags=re.MULTILINE):
        heading = re.match(r"### `([^`]+)`\s*\n", part)
        if heading:
            found[heading.group(1)] = part[heading.end() :]
    return found


def users_of(metric: str) -> tuple[set[str], set[str]]:
    """The dashboard panels and the alerts whose expressions read ``metric``."""
    panels = {
        panel["title"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel["targets"]
        if metric in PROMQL.findall(target["expr"])
    }
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
        if metric in PROMQL.findall(rule["expr"])
    }
    return panels, alerts


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_exported_metric_is_documented(family: Family) -> None:
    found = sections(METRICS_DOC.read_text())
    assert family.name in found, f"docs/metrics.md has no section `### \\`{family.name}\\``"
    section = found[family.name]
    assert re.search(rf"\btype\b.*\b{family.type}\b", section), (
        f"{family.name}: not a {family.type}"
    )
    for label in family.labels:
        assert f"`{label}`" in section, f"{family.name}: label `{label}` is not described"
    for series in family.series:
        assert series.removeprefix(family.name) in section, f"{family.name}: {series} not shown"
    panels: set[str] = set()
    alerts: set[str] = set()
    for series in family.series:
        used = users_of(series)
        panels |= used[0]
        alerts |= used[1]
    for title in panels:
        assert title in section, f"{family.name}: the dashboard panel {title!r} is not named"
    for alert in alerts:
        assert alert in section, f"{family.name}: the alert {alert} is not named"


def test_the_metrics_page_names_only_exported_metrics() -> None:
    text = METRICS_DOC.read_text()
    # What Prometheus shows (a counter's base name is not among it), and a
    # histogram by its own name.
    counters = {f.name.removesuffix("_total") for f in FAMILIES if f.type == "counter"}
    histograms = {f.name for f in FAMILIES if f.type == "histogram"}
    shown = exported_names() - counters - histograms
    # FAMILIES, built above to read labels, is the same set of metrics.
    assert shown == {series for f in FAMILIES for series in f.series}
    known = shown | histograms
    unknown = set(METRIC.findall(text)) - known
    assert not unknown, f"docs/metrics.md names metrics the kit does not export: {unknown}"
    assert set(sections(text)) == {f.name for f in FAMILIES}
    assert "/healthz" in text
