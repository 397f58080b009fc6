"""Wall time of one 2x2 sweep (learning_rate x rank) of 01_generate_lora.ipynb on the tiny offline
models: the local default (`siso-sweep`, one run after another in this process) against a
two-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head and a worker node, one
CPU each; the sweep as `siso-sweep --ray-address` runs it). Each sweep starts from an empty folder;
the cluster's start-up is timed apart. Ray gives each task one CPU thread (OMP_NUM_THREADS=1);
the local runs use torch's default threads (`--threads` sets them).

    python benchmarks/bench_sweep_ray.py                 # prints both lines, writes results/sweep-ray-<machine>.md
    python benchmarks/bench_sweep_ray.py --iterations 10

Tiny random models: this measures the sweep machinery (kernel start, model loading, papermill,
returning the files), not SISO's speed; on a 2-core machine two nodes can at best halve the time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2, help="SISO iterations per run (default 2, as the tests)")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the local runs (default: torch's)")
    parser.add_argument("--tag", default=f"cpu-{os.cpu_count()}core", help="results/sweep-ray-<tag>.md")
    args = parser.parse_args(argv)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import ray
    from ray.cluster_utils import Cluster

    from siso_lib.offline import ensure_test_assets
    from siso_lib.sweeps.spec import build_sweep
    from siso_lib.sweeps.local import run_sweep
    from siso_lib.sweeps.on_ray import run_sweep_ray

    scratch = Path(tempfile.mkdtemp(prefix="bench-sweep-ray-"))
    assets = ensure_test_assets(REPO / "outputs" / "test-assets")
    fixed = {"models": "offline", "assets_dir": str(Path(assets["sdxl"]).parent), "num_train_epochs": args.iterations}
    grid = {"learning_rate": [1e-3, 5e-3], "rank": [2, 4]}

    def sweep(where: str):
        return build_sweep("bench", grid, fixed, root=scratch / where)

    quiet = lambda line: None  # noqa: E731
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    local = run_sweep(sweep("local"), echo=quiet)
    local_seconds = time.perf_counter() - started
    assert local.counts == {"completed": 4}, local.counts

    started = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * 1024**2,
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=1, object_store_memory=100 * 1024**2)
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    cluster.wait_for_nodes()
    cluster_seconds = time.perf_counter() - started
    try:
        started = time.perf_counter()
        on_ray = run_sweep_ray(sweep("ray"), echo=quiet, progress=False)
        ray_seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert on_ray.counts == {"completed": 4}, on_ray.counts

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, Ray {ray.__version__}"
    load = f"1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other jobs share this CPU)"
    lines = [
        f"2x2 tiny sweep ({args.iterations} iterations per run), {machine}:",
        f"  local default (siso-sweep):          {local_seconds:6.1f} s",
        f"  2-node Ray cluster (--ray-address):  {ray_seconds:6.1f} s  (+ {cluster_seconds:.1f} s to start the cluster)",
        f"  {load}",
    ]
    print("\n".join(lines))
    out = REPO / "benchmarks" / "results" / f"sweep-ray-{args.tag}.md"
    out.write_text(
        "# A 2x2 sweep: local default vs a 2-node Ray cluster (wall seconds)\n\n"
        f"Machine: {machine}. Made by `benchmarks/bench_sweep_ray.py --iterations {args.iterations}`"
        f"{f' --threads {args.threads}' if args.threads else ''}; tiny offline models, so the time is the "
        "machinery's (kernel start, model loading, papermill, files returned to the driver). "
        f"{load[0].upper()}{load[1:]}.\n\n"
        "| sweep | wall s |\n| --- | --- |\n"
        f"| local default, 4 runs one after another | {local_seconds:.1f} |\n"
        f"| 2-node Ray cluster (1 CPU per node), 4 runs as Ray tasks | {ray_seconds:.1f} |\n"
        f"| starting that cluster (head + worker node) | {cluster_seconds:.1f} |\n"
    )
    print(f"written: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
