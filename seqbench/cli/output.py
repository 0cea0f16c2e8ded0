"""What every command prints through: one rich console setup, warnings, and the plugin registries with
their broken plugins named. User text is escaped (``rich.markup.escape``) before it reaches rich."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from seqbench import registry
from seqbench.errors import UserError


def load_registries(warn_broken: bool = True) -> registry.Registries:
    """Every installed plugin's models and tasks; a plugin that failed to load is named in a warning
    (``list`` passes ``warn_broken=False`` and shows them in a table of their own)."""
    # looked up on the module at each call, so tests can register extra plugins by replacing it
    built = registry.build_registries()
    for name, error in (built.broken_plugins if warn_broken else {}).items():
        console(stderr=True).print(f"[yellow]warning:[/] plugin {escape(repr(name))} failed to load and was skipped: "
                                   f"{escape(str(error))}")
    return built


def console(stderr: bool = False) -> Console:
    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal:  # logs and pipes get whole tables rather than ones cut at 80 columns
        out.width = 160
    return out


def warn(text: str) -> None:
    console(stderr=True).print(f"[yellow]warning:[/] {escape(text)}", soft_wrap=True)


def warn_unreadable(path: Path, exc: Exception) -> None:
    console(stderr=True).print(f"[yellow]warning:[/] skipping unreadable results file {escape(str(path))}: "
                               f"{type(exc).__name__}: {escape(str(exc))}", soft_wrap=True)


def check_tune_keys(keys, settings: list[dict], where: str) -> None:
    """``--tune`` keys must be settings (``section.key``) that ``settings`` (one dict per run or cell) have:
    an unknown key would otherwise be dropped in silence, and the figures or rows not tuned at all."""
    known = set().union(*settings) if settings else set()
    for key in keys:
        if key not in known:
            raise UserError(f"--tune {key}: {where} has no setting {key}; tune a SECTION.KEY the grid varies, "
                            "e.g. train.lr (sections: model, task, train)")
