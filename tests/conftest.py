"""Shared fixtures: an isolated data cache, the real registries, and a CLI runner."""

from __future__ import annotations

import pytest

from seqbench.cli import main
from seqbench.registry import build_registries


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "data-cache"))


@pytest.fixture(scope="session")
def registries():
    return build_registries()


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""

    def run(*argv: str):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def smoke_overrides():
    """Extra --set items a task needs at the smoke preset on a machine without downloads."""

    def overrides(task: str) -> list[str]:
        return []

    return overrides
