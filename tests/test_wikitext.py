"""WikiText: the standard word-level setting on a small corpus the test writes, and clean failures without data."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from seqbench.cli import main
from seqbench.configure.options import RunOptions
from seqbench.configure.resolve import resolve_run_config
from seqbench.registry import build_registries
from seqbench.train.runner import run
from seqbench_tasks.wikitext import EOS, UNK, WikiTextConfig, WikiTextData

TRAIN = " = Heading = \n\n the cat sat on the mat . \n the dog sat on the cat . \n"
VALID = " the cat sat . \n"
TEST = " the zebra sat on the mat . \n"  # "zebra" is not in the training split


def write_corpus(folder, train=TRAIN, valid=VALID, test=TEST, repeat=1):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wiki.train.tokens").write_text(train * repeat, encoding="utf-8")
    (folder / "wiki.valid.tokens").write_text(valid * repeat, encoding="utf-8")
    (folder / "wiki.test.tokens").write_text(test * repeat, encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "datasets", None)  # never reach for the hub in tests


def test_vocabulary_from_train_eos_per_line_and_unk_for_unseen_words(tmp_path):
    folder = write_corpus(tmp_path / "wt")
    data = WikiTextData(WikiTextConfig(data_dir=str(folder), seq_len=4), seed=0, batch_size=2)
    data.setup()
    vocab = data.vocab()
    expected = ["=", "Heading", EOS, "the", "cat", "sat", "on", "mat", ".", "dog", UNK]
    assert list(vocab) == expected
    assert data.info().vocab_size == len(expected)

    def stream(split):
        d = data.splits[split]
        return torch.cat([d["tokens"][:, 0:1], d["targets"]], dim=1)  # each chunk's tokens, then one more

    train_words = TRAIN.split("\n")[:-1]  # the file's lines
    train_ids = [vocab[w] for line in train_words for w in line.split() + [EOS]]
    n = (len(train_ids) - 1) // 4
    assert torch.equal(data.splits["train"]["tokens"].flatten(), torch.tensor(train_ids[: 4 * n]))
    assert torch.equal(data.splits["train"]["targets"].flatten(), torch.tensor(train_ids[1: 4 * n + 1]))
    test_ids = [vocab.get(w, vocab[UNK]) for w in TEST.split() + [EOS]]
    assert test_ids.count(vocab[UNK]) == 1
    assert torch.equal(data.splits["test"]["tokens"].flatten(), torch.tensor(test_ids[:4]))
    assert stream("test").shape == (1, 5)


def test_cache_follows_the_file_contents(tmp_path, monkeypatch):
    folder = write_corpus(tmp_path / "wt")
    config = WikiTextConfig(data_dir=str(folder), seq_len=4)
    first = WikiTextData(config, seed=0, batch_size=2)
    fp = first.data_fingerprint()
    again = WikiTextData(config, seed=7, batch_size=2)  # the seed plays no part in file data
    again.setup()
    assert {source for source, _ in again.load_report.values()} == {"cache"}
    assert again.data_fingerprint() == fp

    write_corpus(folder, test=" the dog sat on the mat . \n")
    edited = WikiTextData(config, seed=0, batch_size=2)
    edited.setup()
    assert edited.load_report["test"][0] == "generated"
    assert edited.data_fingerprint() != fp


def test_missing_data_exits_2_with_instructions_and_no_traceback(capsys):
    code = main(["run", "--model", "gru", "--task", "wikitext", "--preset", "smoke", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    for needed in ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens", "task.data_dir", "datasets",
                   "wikitext-2-v1"):
        assert needed in err
    assert "Traceback" not in err


def test_folder_without_the_files_names_what_is_missing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["describe", "--task", "wikitext", "--set", f"task.data_dir={tmp_path / 'empty'}"])
    err = capsys.readouterr().err
    assert code == 2 and "lacks wiki.train.tokens" in err and "Traceback" not in err


def test_runs_on_a_local_corpus_and_reports_perplexity(tmp_path):
    folder = write_corpus(tmp_path / "wt", repeat=40)
    registries = build_registries()
    config = resolve_run_config(registries, "transformer", "wikitext", preset="smoke",
                                overrides=[f"task.data_dir={folder}", "task.max_train_tokens=0",
                                           "train.max_steps=40", "train.warmup_steps=5", "train.lr=3e-3"])
    row = run(registries, config, RunOptions(results_dir=tmp_path / "results", progress=False))
    assert row["status"] == "ok"
    assert 1 < row["perplexity"] < 11  # learned: below a uniform guess over the 11 words
    assert row["perplexity"] == pytest.approx(math.exp(row["loss"]), rel=1e-6)
    assert row["data_fingerprint"]


def test_config_validation():
    from seqbench.configure.config import ConfigError

    with pytest.raises(ConfigError, match="task.max_train_tokens"):
        WikiTextConfig(seq_len=128, max_train_tokens=100)
    with pytest.raises(ConfigError, match="task.name"):
        resolve_run_config(build_registries(), "gru", "wikitext", overrides=["task.name=wikitext-5"])
