"""seqbench: train and compare sequence architectures; every result is a Parquet row.

The package is laid out as the flow of a run, in wings that import one way only
(cli -> sweeps, analyse -> train -> configure -> the ground):

- the ground, at the top level: ``contracts`` (the types harness and plugins agree on), ``registry``
  (plugin specs), ``hookspecs``, ``results`` (every file format), ``errors``, ``capabilities``, ``process``;
- ``api``: the one face plugin authors import (with ``hookspecs``);
- ``configure/``, ``train/``, ``sweeps/``, ``analyse/``: the wings (each ``__init__`` says what it holds);
- ``bench`` (throughput) and ``cli/`` (the command line) on top.

Import rule (the one place it is stated): torch, Lightning, torchmetrics and torch-geometric take
~7 s to import here, so what ``seqbench --help`` and ``seqbench list`` load never imports them at
module level: the CLI's parser and dispatcher (``cli/__init__.py`` loads a command's module only when
that command runs), ``registry``, ``hookspecs``, ``api`` (its torch-backed names load on first use),
``contracts``, ``errors``, ``configure/config.py``, ``configure/options.py``, ``train/kernels.py`` and the
plugins' registration modules. Every other module imports what it needs at its top.
``tests/test_layout.py`` holds both rules: no import cycle, and ``list`` without torch.
"""

__version__ = "0.1.0"
