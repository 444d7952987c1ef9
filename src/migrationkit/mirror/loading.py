"""Loading the mirror models module that ``migrationkit introspect`` wrote.

The module registers its models when it runs (``@register_mirror``); it may
be named by an importable module name or by a path to its ``.py`` file.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from migrationkit.errors import ConfigurationError
from migrationkit.mirror.config import MirrorConfig
from migrationkit.mirror.model import MirrorDocument, registered_mirrors

__all__ = ["import_models", "selected_models"]


def import_models(where: str | Path) -> None:
    """Run a models module, given as ``package.module`` or a path to a ``.py`` file."""
    text = str(where)
    if text.endswith(".py") or "/" in text or Path(text).suffix:
        path = Path(text)
        if not path.is_file():
            raise ConfigurationError(
                f"no mirror models at {path}: run `migrationkit introspect` first"
            )
        name = f"migrationkit_mirror_models_{abs(hash(path.resolve()))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigurationError(f"{path} cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise ConfigurationError(f"{path} failed to import: {exc}") from exc
        return
    try:
        importlib.import_module(text)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import the mirror models module {text!r}: {exc}") from exc


def selected_models(config: MirrorConfig) -> list[type[MirrorDocument]]:
    """Import the config's models module; the models of the tables it selects."""
    import_models(config.models)
    models = [m for m in registered_mirrors() if config.selects(m.mirror.qualified_convex_name)]
    if not models:
        raise ConfigurationError(
            f"{config.models} registers no mirror model the config selects: re-run"
            " `migrationkit introspect`"
        )
    return models
