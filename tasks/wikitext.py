"""Word-level language modelling on WikiText-2 (default) or WikiText-103 (Merity et al. 2016).

The standard setting (PyTorch's word_language_model, AWD-LSTM): every line of a split is split on
whitespace and ends with an ``<eos>`` token; the vocabulary is every word of the training split, in
order of first appearance (WikiText already maps rare words to ``<unk>``; a val/test word missing
from it becomes ``<unk>`` too). Each split's token stream is cut into non-overlapping chunks of
``seq_len``; the target at each position is the next token, and every position is scored. The test
metric is perplexity = exp(mean cross-entropy per token over the whole test split); ``accuracy`` is
next-token accuracy. Chunks do not carry context across their boundary, so perplexities are higher
than those of sliding-window or stateful (TBPTT) evaluation.

Data comes from ``task.data_dir``, a folder with ``wiki.train.tokens``, ``wiki.valid.tokens`` and
``wiki.test.tokens`` (the layout of the official wikitext-2-v1 / wikitext-103-v1 archives), or,
when no folder is given, through the Hugging Face ``datasets`` library (``Salesforce/wikitext``)
if it is installed and can reach its hub. Tokenised splits are cached like generated ones, keyed by
a hash of the source text, so an edited file is never served from a stale cache.

Worked example (seq_len=4; train text "the cat sat\\nthe end\\n")::

    vocabulary: the=0 cat=1 sat=2 <eos>=3 end=4 <unk>=5
    stream    : the cat sat <eos> the end <eos>  ->  0 1 2 3 0 4 3
    chunk     : tokens 0 1 2 3, targets 1 2 3 0   (the trailing 4 3 do not fill a chunk and are dropped)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from seqbench.api import TaskInfo, TensorTaskData, UserError, require

EOS = "<eos>"
UNK = "<unk>"
FILES = {"train": "wiki.train.tokens", "val": "wiki.valid.tokens", "test": "wiki.test.tokens"}
HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}
HF_DATASET = "Salesforce/wikitext"
ARCHIVES = {"wikitext-2": "wikitext-2-v1", "wikitext-103": "wikitext-103-v1"}


@dataclass(frozen=True)
class WikiTextConfig:
    name: Literal["wikitext-2", "wikitext-103"] = "wikitext-2"
    data_dir: str = ""  # folder with wiki.{train,valid,test}.tokens; "" = the `datasets` library
    seq_len: int = 128  # tokens per chunk
    max_train_tokens: int = 0  # train on the first N tokens only (0 = all); the vocabulary still uses all
    max_val_tokens: int = 0  # validate on the first N tokens only (0 = all); test always uses all

    def __post_init__(self) -> None:
        require(self.seq_len > 0, "task.seq_len", f"must be > 0, got {self.seq_len}")
        for name in ("max_train_tokens", "max_val_tokens"):
            value = getattr(self, name)
            require(value == 0 or value > self.seq_len, f"task.{name}",
                    f"must be 0 (all) or more than task.seq_len {self.seq_len}, got {value}")


def missing_data_message(c: WikiTextConfig, reason: str) -> str:
    archive = ARCHIVES[c.name]
    return (
        f"{c.name} data not found ({reason}). Put {', '.join(FILES.values())} in a folder DIR and pass "
        f"--set task.data_dir=DIR. The files come in the official {archive}.zip archive (Salesforce's "
        f"WikiText release); the same text is the Hugging Face dataset {HF_DATASET}, config {archive} "
        f"(https://huggingface.co/datasets/{HF_DATASET}). Alternatively install the `datasets` library on a "
        "machine that can reach the Hugging Face Hub and leave task.data_dir empty."
    )


def data_files(c: WikiTextConfig) -> dict[str, Path]:
    folder = Path(c.data_dir).expanduser()
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise UserError(missing_data_message(c, f"{folder} lacks {', '.join(missing)}"))
    return {split: folder / name for split, name in FILES.items()}


def check_has_words(lines: list[str], where: str) -> None:
    """A split without a single word would give a vocabulary of <eos> alone and a meaningless perplexity."""
    if not any(line.strip() for line in lines):
        state = "empty" if not lines else "blank (whitespace only)"
        raise UserError(f"{where} is {state}: every WikiText split needs text; use the files of the official "
                        "archive, unpacked as they are")


def read_lines_from_dir(c: WikiTextConfig) -> dict[str, list[str]]:
    out = {}
    for split, path in data_files(c).items():
        try:
            with open(path, encoding="utf-8") as f:  # lines as `for line in f` yields them, like the reference
                out[split] = list(f)
        except UnicodeDecodeError as exc:
            raise UserError(f"{path} is not UTF-8 text ({exc.reason}): WikiText files are UTF-8; use the files of "
                            "the official archive, unpacked as they are") from None
        check_has_words(out[split], str(path))
    return out


def read_lines_from_hub(c: WikiTextConfig) -> dict[str, list[str]]:
    try:
        import datasets
    except ImportError:
        raise UserError(missing_data_message(c, "no task.data_dir given and the `datasets` library is not "
                                                "installed")) from None
    try:
        loaded = datasets.load_dataset(HF_DATASET, ARCHIVES[c.name])
        out = {split: [row["text"] for row in loaded[hf]] for split, hf in HF_SPLITS.items()}
    except Exception as exc:  # offline, hub unreachable, renamed dataset: all end the same way for a user
        raise UserError(missing_data_message(c, f"`datasets` could not load {HF_DATASET}/{ARCHIVES[c.name]}: "
                                                f"{type(exc).__name__}: {str(exc)[:200]}")) from None
    for split, lines in out.items():
        check_has_words(lines, f"the {split} split of {HF_DATASET}/{ARCHIVES[c.name]}")
    return out


def words(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        out.extend(line.split())
        out.append(EOS)
    return out


def build_vocabulary(train_words: list[str]) -> dict[str, int]:
    vocab = dict.fromkeys(train_words)  # first appearance order: deterministic, the usual convention
    vocab.setdefault(UNK)
    return {word: i for i, word in enumerate(vocab)}


def encode(split_words: list[str], vocab: dict[str, int]) -> torch.Tensor:
    unk = vocab[UNK]
    return torch.tensor([vocab.get(w, unk) for w in split_words], dtype=torch.long)


def chunk(stream: torch.Tensor, seq_len: int) -> dict[str, torch.Tensor]:
    n = (len(stream) - 1) // seq_len
    if n == 0:
        raise UserError(f"a WikiText split has {len(stream)} tokens, too few for one chunk of task.seq_len "
                        f"{seq_len}; lower task.seq_len or use a larger corpus")
    return {"tokens": stream[: n * seq_len].view(n, seq_len), "targets": stream[1: n * seq_len + 1].view(n, seq_len)}


class WikiTextData(TensorTaskData):
    seeded = False  # read from files: every seed sees the same data

    def __init__(self, config: WikiTextConfig, seed: int, batch_size: int):
        super().__init__(config, seed, batch_size)
        self._lines: dict[str, list[str]] | None = None
        self._vocab: dict[str, int] | None = None
        self._source_key: str | None = None

    def lines(self) -> dict[str, list[str]]:
        if self._lines is None:
            c = self.config
            self._lines = read_lines_from_dir(c) if c.data_dir else read_lines_from_hub(c)
        return self._lines

    def vocab(self) -> dict[str, int]:
        if self._vocab is None:
            self._vocab = build_vocabulary(words(self.lines()["train"]))
        return self._vocab

    def source_key(self) -> str:
        """A hash of all three splits' text (the vocabulary depends on train, each split on itself).
        Files are hashed as bytes, without tokenising them, so a cached run stays cheap."""
        if self._source_key is None:
            digest = hashlib.sha256()
            if self.config.data_dir:
                for split, path in data_files(self.config).items():
                    digest.update(f"{split}\0".encode())
                    with open(path, "rb") as f:
                        for block in iter(lambda: f.read(1 << 20), b""):
                            digest.update(block)
            else:
                for split, lines in self.lines().items():
                    digest.update(f"{split}\0".encode())
                    for line in lines:  # line by line: the same digest as the joined text, no copy of it
                        digest.update(line.encode("utf-8"))
            self._source_key = digest.hexdigest()[:24]
        return self._source_key

    def info(self) -> TaskInfo:
        vocab_size = int(self.split_data("train")["vocab_size"])
        return TaskInfo(vocab_size=vocab_size, seq_len=self.config.seq_len, num_classes=vocab_size,
                        target="token")

    def generate(self, split: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
        c = self.config
        split_words = words(self.lines()[split])
        if split == "train" and self._vocab is None:
            self._vocab = build_vocabulary(split_words)  # from all of train: split the text into words once
        vocab = self.vocab()
        limit = {"train": c.max_train_tokens, "val": c.max_val_tokens, "test": 0}[split]
        if limit:
            split_words = split_words[: limit + 1]  # one token per word: encode only what is kept
        stream = encode(split_words, vocab)
        return {**chunk(stream, c.seq_len), "vocab_size": torch.tensor(len(vocab))}
