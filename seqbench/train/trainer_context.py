"""Context managers around Lightning's Trainer, for every place that builds one (a run, an evaluation
at other lengths): its start-up chatter silenced, and torch's global flags left as they were found."""

from __future__ import annotations

import logging
import warnings

import torch


class restore_deterministic_mode:
    """Lightning's ``deterministic=True`` switches torch's global flag on and leaves it on; a run must
    not change the process for what comes after it (the next cell of a sweep, a benchmark)."""

    def __enter__(self):
        self._before = torch.are_deterministic_algorithms_enabled()
        self._warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        return self

    def __exit__(self, *exc):
        torch.use_deterministic_algorithms(self._before, warn_only=self._warn_only)
        return False


class quiet_lightning:
    """Lightning's start-up chatter (GPU available: ..., tips) is noise next to seqbench's output."""

    def __enter__(self):
        self._level = logging.getLogger("lightning.pytorch").level
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Consider setting `persistent_workers`.*")
        warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
        # the logged validation metrics are torchmetrics' values, which are already reduced over DDP ranks
        warnings.filterwarnings("ignore", message=".*`self.log\\('val_.*', ..., sync_dist=True\\)`.*")
        # a resumed run's checkpoint folder holds its earlier checkpoints, and its training order resumes
        # mid-epoch through seqbench.train.checkpoints.ResumeState, not a stateful loader
        warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
        return self

    def __exit__(self, *exc):
        logging.getLogger("lightning.pytorch").setLevel(self._level)
        self._warnings.__exit__(*exc)
        return False
