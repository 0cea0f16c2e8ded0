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


WIKI_LINES = (" = Heading = \n", " the cat sat on the mat . \n", " the dog sat on the cat . \n",
              " a bird flew over the dog and the cat . \n")


@pytest.fixture(scope="session")
def wikitext_dir(tmp_path_factory):
    """A small corpus in WikiText's layout: the machine has no network to fetch the real one."""
    folder = tmp_path_factory.mktemp("wikitext")
    for split, repeat in (("train", 300), ("valid", 40), ("test", 40)):
        (folder / f"wiki.{split}.tokens").write_text("".join(WIKI_LINES) * repeat, encoding="utf-8")
    return folder


@pytest.fixture
def smoke_overrides(wikitext_dir):
    """Extra --set items a task needs at the smoke preset on a machine without downloads."""

    def overrides(task: str) -> list[str]:
        return [f"task.data_dir={wikitext_dir}"] if task == "wikitext" else []

    return overrides
