"""The command line's arguments, every command's in one parser. Light by design: it imports no handler
(each subcommand names its handler as a ``"module:function"`` target, loaded by :func:`seqbench.cli.main`
only when that command runs), so ``--help`` and every argument mistake cost no torch import.
"""

from __future__ import annotations

import argparse

from seqbench import __version__

DESCRIPTION = "Train and compare sequence architectures under PyTorch Lightning; every result is a Parquet row."


def _add_logger(p: argparse.ArgumentParser) -> None:
    p.add_argument("--logger", action="append", choices=["csv", "tensorboard", "mlflow", "wandb"],
                   help="log to Lightning's CSV/TensorBoard/MLflow/W&B logger under <results>/logs/; repeatable")


def _add_checkpoints(p: argparse.ArgumentParser, keep_default: int | None = 2) -> None:
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="write a checkpoint every N steps under <results>/checkpoints/<config_hash>/")
    p.add_argument("--keep-checkpoints", type=int, default=keep_default, metavar="K",
                   help="keep the last K (default 2)")


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: the cores this process may use, or OMP_NUM_THREADS)")


def _add_scale_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed", "16-mixed", "bf16-true"])
    p.add_argument("--devices", default="1", help="Lightning devices: a count, a list like 0,1, or auto")
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp")
    p.add_argument("--num-nodes", type=int, default=1)


def _add_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default=None, metavar="N",
                   help="solve each model's width for N parameters (e.g. 100k, 1.5M; within ±5%%, moving a second "
                        "size such as the MLP ratio where the width alone cannot, else the closest with a warning)")


def _add_eval_lengths(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eval-lengths", default=None, metavar="L1,L2",
                   help="after training, test again at these lengths (the task's length key) -> <results>/evals/")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqbench", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"seqbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="registered models and tasks")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler="seqbench.cli.listing:cmd_list")

    p = sub.add_parser("run", help="train and test one model on one task; writes one Parquet row")
    p.add_argument("--model", default=None, help="required unless --from or --from-config")
    p.add_argument("--variant", default=None, help="model variant (default: the model's first)")
    p.add_argument("--task", default=None, help="required unless --from or --from-config")
    p.add_argument("--from", dest="from_run", default=None, metavar="RUN_ID",
                   help="re-run a recorded run's config exactly (a run id in --results, or a run file)")
    p.add_argument("--from-config", default=None, metavar="FILE_OR_JSON",
                   help="re-run a row's config_json exactly (the JSON, or a file holding it)")
    p.add_argument("--preset", default="default", help="smoke | default | cpu | paper (default: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a model./task./train. setting; repeatable")
    p.add_argument("--max-steps", type=int, default=None, help="shortcut for --set train.max_steps=N")
    p.add_argument("--results", default="results", help="results folder (default: results/)")
    _add_scale_out(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--probe", action="append", choices=["rank"],
                   help="record a probe in the curves at each evaluation (rank: per-layer effective rank)")
    _add_params(p)
    _add_eval_lengths(p)
    _add_logger(p)
    _add_checkpoints(p)
    p.add_argument("--resume", action="store_true", help="continue this configuration from its last checkpoint")
    p.add_argument("--save-model", action="store_true",
                   help="keep the final weights under <results>/models/<run_id>.pt (for `seqbench eval`)")
    _add_threads(p)
    p.set_defaults(handler="seqbench.cli.run:cmd_run")

    p = sub.add_parser("eval", help="test a model saved with `run --save-model` again, without retraining")
    p.add_argument("run_id")
    p.add_argument("--results", default="results")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _add_eval_lengths(p)
    _add_threads(p)
    p.set_defaults(handler="seqbench.cli.run:cmd_eval")

    p = sub.add_parser("describe", help="a task's train split (--task), or a model's config keys (--model)")
    p.add_argument("--task", default=None, help="the task's train split: size, labels, majority-class rate")
    p.add_argument("--model", default=None,
                   help="every model.* key: type, default, each preset's value and its comment")
    p.add_argument("--variant", default=None, help="with --model: the variant (default: the model's first)")
    p.add_argument("--preset", default="default", help="smoke | default | cpu | paper (default: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", metavar="task.KEY=VALUE", help="override a task setting; repeatable")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler="seqbench.cli.describe:cmd_describe")

    p = sub.add_parser("leaderboard", help="rank models per task from a results folder")
    p.add_argument("--results", default="results")
    p.add_argument("--task", default=None)
    p.add_argument("--format", default="table", choices=["table", "markdown", "csv", "json"],
                   help="csv and json hold raw numbers (mean, low, high, n, seeds, tuned values)")
    p.add_argument("--out", default=None, metavar="FILE", help="write the leaderboard here instead of stdout")
    p.add_argument("--tune", action="append", metavar="SECTION.KEY",
                   help="choose this setting per model on validation (e.g. train.lr); repeatable")
    p.add_argument("--length", type=int, default=None,
                   help="rank by the test at this length (runs evaluated with --eval-lengths)")
    p.set_defaults(handler="seqbench.cli.analyse:cmd_leaderboard")

    p = sub.add_parser("bench", help="tokens/s, peak memory and MFU against sequence length")
    p.add_argument("--models", required=True, help="comma-separated, e.g. transformer,gru")
    p.add_argument("--variant", default=None, help="comma-separated variants (default: each model's first)")
    p.add_argument("--lengths", default=None, help="comma-separated sequence lengths "
                   "(default: 512..8192 on CPU, 1024..32768 on GPU)")
    p.add_argument("--mode", default="train", help="train, infer or train,infer")
    p.add_argument("--preset", default="default", help="model sizes: smoke | default | cpu | paper")
    p.add_argument("--set", action="append", metavar="model.KEY=VALUE", help="model override; repeatable")
    p.add_argument("--gate-rate", type=float, default=None,
                   help="fix the fraction of gated units (models with force_gate_rate, e.g. the chunked TGN)")
    p.add_argument("--tokens-per-step", type=int, default=None,
                   help="batch = this // seq_len (default 8192 on CPU, 32768 on GPU)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps; the median is reported (default 5)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per length before status timeout")
    p.add_argument("--precision", default="32-true",
                   help="comma-separated: 32-true, bf16-mixed (default 32-true; with both, each bf16 row shows "
                        "its tokens/s over fp32's)")
    p.add_argument("--missing-only", action="store_true",
                   help="skip each (model, variant, mode, length) that --results already holds an ok row of "
                        "(same preset, device, threads, --params, --gate-rate); report --run resumes this way")
    _add_threads(p)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--results", default="results")
    _add_params(p)
    p.set_defaults(handler="seqbench.cli.bench:cmd_bench")

    # Sweep flags default to None (not given): given ones override an experiment file, which overrides
    # seqbench.sweeps.experiments.SweepArgs's defaults (shown here in the help).
    p = sub.add_parser("sweep", help="run the grid models x variants x tasks x seeds x overrides (resumable)")
    p.add_argument("experiment", nargs="?", default=None,
                   help="an experiment file (TOML, e.g. experiments/smoke.toml); flags override it")
    p.add_argument("--models", help="comma-separated model names")
    p.add_argument("--tasks", help="comma-separated task names")
    p.add_argument("--seeds", help="comma-separated seeds (default 0)")
    p.add_argument("--variants", help="comma-separated; each model takes those it has")
    p.add_argument("--grid", action="append", metavar="SECTION.KEY=V1,V2",
                   help="an axis of the grid, e.g. task.num_nodes=20,40,60; repeatable")
    p.add_argument("--set", dest="sets", action="append", metavar="SECTION.KEY=VALUE",
                   help="override for every cell; repeatable")
    p.add_argument("--max-steps", type=int, help="shortcut for --set train.max_steps=N")
    p.add_argument("--preset", help="smoke | default | cpu | paper (default: default)")
    p.add_argument("--results", help="results folder (default: results/)")
    p.add_argument("--shard", metavar="I/N", help="run only shard I of N (0 <= I < N)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and whether each is done")
    p.add_argument("--retry-failed", action="store_true", default=None,
                   help="run failed/oom cells again (their old rows are replaced)")
    p.add_argument("--claim-timeout", type=float, metavar="SECONDS",
                   help="take over a cell's claim after this long without its owner's heartbeat (default 6 h)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto")
    p.add_argument("--precision", choices=["32-true", "bf16-mixed", "16-mixed", "bf16-true"], help="default: 32-true")
    p.add_argument("--devices", help="Lightning devices per cell: a count, a list like 0,1, or auto (default 1)")
    p.add_argument("--strategy", help="Lightning strategy, e.g. ddp (default: auto)")
    p.add_argument("--num-nodes", type=int, help="default 1")
    g = p.add_argument_group("launchers (where cells run; see README)")
    g.add_argument("--launcher", choices=["local", "ray", "slurm"], help="default: local")
    g.add_argument("--jobs", type=int, help="local: cells at once, each its own process, sharing the cores (default 1)")
    g.add_argument("--address", help="ray: an existing cluster's address (default: start a local instance)")
    g.add_argument("--cpus-per-cell", type=int, help="ray, slurm: CPUs (and torch threads) per cell (default 1)")
    g.add_argument("--gpus-per-cell", type=float, help="ray, slurm: GPUs per cell (default 0)")
    g.add_argument("--slurm-partition", help="slurm: the partition")
    g.add_argument("--slurm-time", help="slurm: each job's time limit, minutes or [D-]H:MM:SS (default 60)")
    g.add_argument("--slurm-array-parallelism", type=int, help="slurm: array tasks running at once (default 256)")
    g.add_argument("--slurm-folder", help="slurm: submitit's logs and job files (default <results>/slurm)")
    g.add_argument("--slurm-cluster", choices=["slurm", "local", "debug"],
                   help="slurm: submitit's cluster (default: detected); local runs the jobs on this machine")
    _add_params(p)
    _add_eval_lengths(p)
    p.add_argument("--tune", action="append", metavar="SECTION.KEY",
                   help="a key the grid tunes (e.g. train.lr): printed as the leaderboard command to read the sweep")
    _add_logger(p)
    _add_checkpoints(p, keep_default=None)
    p.set_defaults(handler="seqbench.cli.sweep:cmd_sweep")

    p = sub.add_parser("plot", help="PNG figures from a results folder (nothing is re-run)")
    p.add_argument("--results", default="results")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: <results>/plots)")
    p.add_argument("--tune", action="append", metavar="SECTION.KEY",
                   help="draw only each model's value of KEY chosen on validation (e.g. train.lr); repeatable")
    p.set_defaults(handler="seqbench.cli.analyse:cmd_plot")

    p = sub.add_parser("report", help="markdown reproduction report of the seed paper's claims")
    p.add_argument("--results", default="results")
    p.add_argument("--preset", default="default", help="the scale whose runs and commands are reported")
    p.add_argument("--claims", default=None, help="a claims JSON file (default: the seed paper's)")
    p.add_argument("--out", default=None,
                   help="write the markdown here (figures beside it, in <name>_figures/) instead of stdout")
    p.add_argument("--run", action="store_true",
                   help="first run the sweeps and benchmarks the claims name at --preset (resumable: only what "
                        "is missing runs), then render")
    p.add_argument("--jobs", type=int, default=1, help="with --run: sweep cells run at once (default 1)")
    p.add_argument("--since", default=None, metavar="PATH",
                   help="an earlier document seqbench report rendered (e.g. docs/history/reproduction-2026-11-29.md): "
                        "the summary says which verdicts changed since it, and why")
    p.set_defaults(handler="seqbench.cli.analyse:cmd_report")

    p = sub.add_parser("probes", help="steps each model needs to reach its plateau, from a probe sweep's rows")
    p.add_argument("--results", default="evidence/reproduction",
                   help="the folder the probe sweeps wrote (the claims' evidence folder: experiments/probes/*.toml)")
    p.add_argument("--seed", type=int, default=0,
                   help="the probes' seed (default 0); the claims' other seeds in the same folder are not probes")
    p.add_argument("--out", default=None,
                   help="a markdown file: a new one, or one whose probes section (between the markers "
                        "seqbench.analyse.probes names) is replaced; default: stdout")
    p.set_defaults(handler="seqbench.cli.probes:cmd_probes")
    return parser
