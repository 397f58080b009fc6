"""`siso-sweep`: run notebooks/01_generate_lora.ipynb headless (papermill) over a parameter grid.

    siso-sweep --name lr-rank --grid learning_rate=1e-4,2e-4 --grid rank=4,8 --subjects data/cat.png data/coffee.png
    siso-sweep sweep.yaml            # the same from a file (YAML or JSON, see sweeps.spec.load_spec)

Every combination of the grid is one run in outputs/sweeps/<name>/<run>/, and
outputs/sweeps/<name>/results.csv has one row per run; docs/sweeps.md says everything else
(resuming, --eval, Ray). Exit codes: 0 every run completed (and was scored with --eval); 1 some
run or its evaluation failed; 2 bad sweep (nothing ran: a bad grid, a missing Ray or notebook
install, or with --dry-run a run that would fail on bad input); 130 / 143 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from ..sweeps.local import run_sweep, runs_to_execute
from ..sweeps.results import write_results
from ..sweeps.spec import RESULTS, EvalOptions, Sweep, SweepError, build_sweep, eval_options, load_spec, parse_grid_option, parse_set_option
from .common import Interrupted, OneLineArgumentParser, print_error

PROG = "siso-sweep"
RAY_INSTALL = 'pip install "ray>=2.40" (the cluster extra of siso-lab: pip install -e ".[cluster]" in a clone)'


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        prog=PROG,
        description="Run notebooks/01_generate_lora.ipynb headless (papermill) over a parameter grid; "
        "collect outputs/sweeps/<name>/results.csv. Re-running skips completed runs.",
        epilog="example: siso-sweep --name lr-rank --set models=offline --grid learning_rate=1e-3,5e-3 "
        "--grid rank=2,4 --subjects data/cat.png data/coffee.png",
    )
    p.add_argument("spec", nargs="?", help="a sweep file (YAML or JSON: name, fixed, grid, subjects, notebook)")
    p.add_argument("--name", help="sweep name (folder under --output-root); default: the file's name or the swept keys")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                   help="sweep a notebook parameter over values (repeatable; NAME=[JSON list] for values with commas)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="fix a notebook parameter for every run")
    p.add_argument("--subjects", nargs="+", metavar="IMAGE", help="subject photos to sweep over")
    p.add_argument("--notebook", help="notebook to execute (default: the shipped notebooks/01_generate_lora.ipynb)")
    p.add_argument("--output-root", default=None, help="folder holding the sweeps (default: outputs/sweeps under the current folder)")
    p.add_argument("--no-retry-failed", action="store_true", help="skip runs that failed before instead of trying them again")
    p.add_argument("--timeout", type=float, default=None, help="seconds one notebook cell may run before the run is failed")
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    p.add_argument("--log-output", action="store_true", help="echo each run's notebook output (progress lines) to stderr")
    p.add_argument("--dry-run", action="store_true", help="list the runs that would run, run none")
    p.add_argument("--collect", action="store_true", help="only rebuild results.csv from the run folders")
    cluster = p.add_argument_group('several GPUs or machines (Ray: pip install "ray>=2.40")')
    cluster.add_argument("--ray", action="store_true",
                         help="run each run as a Ray task on a local Ray started for the sweep (all this machine's GPUs)")
    cluster.add_argument("--ray-address", default=None, metavar="ADDR",
                         help="run on an existing Ray cluster (host:6379 of its head, or 'auto' on a cluster node)")
    cluster.add_argument("--ray-gpus", type=float, default=None, metavar="N",
                         help="GPUs per run (fractions share a GPU, e.g. 0.5); default 1 when the cluster has GPUs, else 0")
    cluster.add_argument("--ray-cpus", type=float, default=None, metavar="N", help="CPUs per run (default 1)")
    cluster.add_argument("--ray-retries", type=int, default=None, metavar="N",
                         help="times Ray runs a task again after losing its worker or node (default 3); "
                         "a run that fails in the notebook is recorded as failed, not retried")
    scores = p.add_argument_group("scores (siso-eval after each run; columns eval_* in results.csv)")
    scores.add_argument("--eval", action="store_true",
                        help="score each completed run's LoRA as siso-eval does (judges loaded once for the sweep); "
                        "runs completed earlier without an evaluation are scored too")
    scores.add_argument("--eval-seeds", type=int, default=None, metavar="N",
                        help="seeds 0..N-1 per prompt (default 4, as siso-eval; seed diversity needs 2 or more)")
    scores.add_argument("--eval-prompts", default=None, metavar="FILE",
                        help="prompt templates, one a line ({class} or DreamBench's {0} {1}); default: siso-eval's built-in prompts")
    return p


def sweep_from_args(args: argparse.Namespace) -> Sweep:
    spec: dict[str, Any] = {"name": None, "grid": {}, "fixed": {}, "subjects": None, "notebook": None}
    if args.spec:
        spec = load_spec(args.spec)
    swept_here = set()
    for text in args.grid:
        key, values = parse_grid_option(text)
        spec["grid"][key] = values
        swept_here.add(key)
    for text in args.set:
        key, value = parse_set_option(text)
        if key in swept_here:
            raise SweepError(f"{key} is given to both --grid and --set: sweep it or fix it, not both")
        spec["grid"].pop(key, None)  # --set overrides a sweep file's grid entry
        spec["fixed"][key] = value
    if args.timeout is not None and not args.timeout > 0:
        raise SweepError(f"--timeout {args.timeout:g}: give a positive number of seconds, or leave it out for no limit")
    subjects = args.subjects or spec.get("subjects")
    if not spec["grid"] and not subjects:
        raise SweepError("nothing to sweep: give a sweep file, --grid NAME=V1,V2 or --subjects")
    return build_sweep(
        name=args.name or spec.get("name"), grid=spec["grid"], fixed=spec["fixed"], subjects=subjects,
        notebook=args.notebook or spec.get("notebook"), root=args.output_root, evaluation=_eval_from_args(args, spec.get("eval")),
    )


def _eval_from_args(args: argparse.Namespace, from_file: dict | None) -> EvalOptions | None:
    """--eval and its options, over a sweep file's `eval`; None when the runs are not to be scored."""
    given = [name for name, value in (("--eval-seeds", args.eval_seeds), ("--eval-prompts", args.eval_prompts)) if value is not None]
    if not (args.eval or from_file is not None):
        if given:
            raise SweepError(f"{given[0]} sets how runs are scored, but scoring is off: add --eval (or eval: true in the sweep file)")
        return None
    if args.collect and (args.eval or given):
        raise SweepError("--collect only rebuilds results.csv (scores included); to score the completed runs, run the sweep with --eval and without --collect")
    from_file = from_file or {}
    seeds = args.eval_seeds if args.eval_seeds is not None else from_file.get("seeds")
    return eval_options(seeds, args.eval_prompts or from_file.get("prompts"))


def _strip_cell_output_newline(record) -> bool:
    """papermill logs each output chunk with its own newline: one line, not a line and a blank one."""
    record.msg = str(record.msg).rstrip("\n")
    return bool(record.msg.strip())


@dataclass
class RayOptions:
    """--ray / --ray-address and the resources of each run's task (sweeps.on_ray.run_sweep_ray)."""

    address: str | None = None  # None: a local Ray started for the sweep
    gpus: float | None = None  # None: 1 when the cluster has GPUs, else 0
    cpus: float = 1.0
    retries: int = 3
    option: str = "--ray"  # what the user typed, for messages


def ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The Ray options, checked (SweepError); None without --ray / --ray-address."""
    given = [name for name, value in (("--ray-gpus", args.ray_gpus), ("--ray-cpus", args.ray_cpus),
                                      ("--ray-retries", args.ray_retries)) if value is not None]
    if not (args.ray or args.ray_address):
        if given:
            raise SweepError(f"{given[0]} sets the resources of Ray tasks: add --ray (a local Ray) or --ray-address ADDR")
        return None
    if args.ray and args.ray_address:
        raise SweepError("--ray starts a local Ray, --ray-address joins an existing cluster: give one of them")
    if args.ray_address is not None and not args.ray_address.strip():
        raise SweepError("--ray-address is empty: give the head node's address (host:6379), or 'auto' on a cluster node")
    if args.ray_gpus is not None and not args.ray_gpus >= 0:
        raise SweepError(f"--ray-gpus {args.ray_gpus:g}: give 0 or more GPUs per run (fractions such as 0.5 share a GPU)")
    if args.ray_cpus is not None and not args.ray_cpus > 0:
        raise SweepError(f"--ray-cpus {args.ray_cpus:g}: give more than 0 CPUs per run, e.g. 1")
    if args.ray_retries is not None and args.ray_retries < 0:
        raise SweepError(f"--ray-retries {args.ray_retries}: give 0 or more")
    if args.collect:
        raise SweepError("--collect only rebuilds results.csv from the run folders here: leave out --ray / --ray-address")
    return RayOptions(
        address=args.ray_address.strip() if args.ray_address else None, gpus=args.ray_gpus,
        cpus=args.ray_cpus if args.ray_cpus is not None else 1.0,
        retries=args.ray_retries if args.ray_retries is not None else 3,
        option="--ray-address" if args.ray_address else "--ray",
    )


def ray_available() -> bool:
    """Whether Ray can be imported (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def offline_hub_problem(sweep: Sweep, retry_failed: bool) -> str | None:
    """With HF_HUB_OFFLINE=1: the first run to execute whose hub model is not in the hub cache, in one
    line (None when there is none). Each run's kernel would find it only after loading torch, about
    20 s a run, every run failing the same way; a --dry-run lists every run's problem."""
    from ..preflight import OFFLINE_FORBIDS, hub_is_offline
    from ..sweeps.spec import run_input_problem

    if not hub_is_offline():
        return None
    for run in runs_to_execute(sweep, retry_failed):
        problem = run_input_problem(run)
        if problem is not None and OFFLINE_FORBIDS in problem:
            return f"run {run.name}: {problem} (nothing ran; --dry-run lists every run's problems)"
    if sweep.evaluation is not None:  # the runs of the real models are scored by judges from the hub
        from ..errors import SISOInputError
        from .evaluate import check_judges_in_hub_cache

        for run in sweep.runs():
            if run.params.get("models") == "hub":
                try:
                    check_judges_in_hub_cache(str(run.params.get("pretrained_model_name_or_path") or "stabilityai/sdxl-turbo"))
                except SISOInputError as error:
                    return f"--eval: {error} (nothing ran)"
    return None


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 every run completed (and, with --eval, was scored); 1 some run failed, or its
    evaluation did (recorded in results.csv: error, eval_error); 2 bad sweep; 130 / 143 interrupted
    by SIGINT / SIGTERM (the current run is recorded as interrupted; a run being scored stays completed)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    echo = lambda line: print(f"{PROG}: {line}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        ray = ray_options(args)
        sweep = sweep_from_args(args)
    except SweepError as error:
        print_error(PROG, str(error))
        return 2
    if ray is not None and not ray_available():
        print_error(PROG, f"{ray.option} needs Ray: {RAY_INSTALL}")
        return 2
    if args.collect:
        echo(f"results: {write_results(sweep)}")
        return 0
    if args.dry_run:
        summary = run_sweep(sweep, retry_failed=not args.no_retry_failed, dry_run=True, echo=echo)
        return 2 if summary.failed else 0
    # the notebooks run here (or on a local Ray, the same Python): papermill and a kernel are needed
    # before any run folder or results.csv is written (a cluster's nodes bring their own)
    if ray is None or ray.address is None:
        problem = offline_hub_problem(sweep, not args.no_retry_failed)
        if problem is not None:
            print_error(PROG, problem)
            return 2
    if (ray is None or ray.address is None) and runs_to_execute(sweep, not args.no_retry_failed):
        from ..notebooks.papermill import notebook_route_problem

        problem = notebook_route_problem(sweep.notebook, args.kernel, "--kernel")
        if problem is not None:
            print_error(PROG, problem)
            return 2
    if args.log_output:  # papermill logs each run's cell output at INFO
        import logging

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("    %(message)s"))
        handler.addFilter(_strip_cell_output_newline)
        papermill_logger = logging.getLogger("papermill")
        papermill_logger.addHandler(handler)
        papermill_logger.setLevel(logging.INFO)
    from ..notebooks.papermill import SignalGuard

    try:
        with SignalGuard() as guard:
            if ray is not None:
                from ..sweeps.on_ray import run_sweep_ray

                summary = run_sweep_ray(
                    sweep, address=ray.address, gpus=ray.gpus, cpus=ray.cpus, retries=ray.retries,
                    retry_failed=not args.no_retry_failed, timeout=args.timeout, kernel_name=args.kernel,
                    log_output=args.log_output, echo=echo, guard=guard,
                )
            else:
                summary = run_sweep(
                    sweep, retry_failed=not args.no_retry_failed, timeout=args.timeout,
                    kernel_name=args.kernel, log_output=args.log_output, echo=echo, guard=guard,
                )
    except SweepError as error:  # found once connected to Ray (resources, address); nothing ran
        print_error(PROG, str(error))
        return 2
    except Interrupted as interruption:
        if ray is not None:
            echo(f"interrupted by {interruption.signal_name}: the Ray tasks are cancelled, the runs that had started are "
                 f"marked interrupted in {sweep.dir / RESULTS}; run the same command again to go on")
        elif getattr(interruption, "while_scoring", False):
            echo(f"interrupted by {interruption.signal_name} while scoring a run: it stays completed, without an "
                 f"evaluation; run the same command again to go on ({sweep.dir / RESULTS})")
        else:
            echo(f"interrupted by {interruption.signal_name}: the current run is marked interrupted in "
                 f"{sweep.dir / RESULTS}; run the same command again to go on")
        return interruption.exit_code
    print(summary.results_csv)
    failed = any(row["status"] in ("failed", "interrupted") or row.get("eval_error") for row in summary.rows)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
