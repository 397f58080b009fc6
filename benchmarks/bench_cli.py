"""How fast the command lines answer when no model is needed: --help and input errors.

Each command runs as users run it (the installed console script, a fresh process), `--repeat`
times; the table gives the median and the worst wall time and the exit code. The goal is under
1.5 s for each on the 2-core build machine: a command must check what it can before it
imports torch, diffusers, timm or open_clip (8-9 CPU-seconds together).

    python benchmarks/bench_cli.py                  # prints the table, writes results/cli-<machine>.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 1.5


def script(name: str) -> str:
    """The console script beside this Python (the venv's), as a user's shell would find it."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def commands(scratch: Path) -> dict[str, list[str]]:
    cat = str(REPO / "data" / "cat.png")
    (scratch / "a_file").write_text("in the way")
    (scratch / "not_a_model").mkdir(exist_ok=True)
    generate, sweep = script("siso-generate"), script("siso-sweep")
    image = ["--subject_image_path", cat]
    return {
        "siso-generate --help": [generate, "--help"],
        "siso-generate: subject image missing": [generate, "--subject_image_path", str(scratch / "missing.png")],
        "siso-generate: resolution 100": [generate, *image, "--resolution", "100"],
        "siso-generate: empty prompt": [generate, *image, "--prompt", ""],
        "siso-generate: learning rate 'abc'": [generate, *image, "--learning_rate", "abc"],
        "siso-generate: output folder unwritable": [generate, *image, "--output_dir", str(scratch / "a_file" / "run")],
        "siso-generate: base model not a diffusers folder": [generate, *image, "--pretrained_model_name_or_path", str(scratch / "not_a_model")],
        "siso-generate: IR checkpoint missing": [generate, *image, "--ir_features_path", str(scratch / "ir.pth")],
        "siso-sweep --help": [sweep, "--help"],
        "siso-sweep --dry-run (2x2 grid)": [sweep, "--name", "bench-cli", "--output-root", str(scratch / "sweeps"),
                                            "--grid", "learning_rate=1e-4,2e-4", "--grid", "rank=2,4", "--dry-run"],
        "siso-sweep: unknown parameter": [sweep, "--name", "bench-cli", "--output-root", str(scratch / "sweeps"),
                                          "--grid", "learnig_rate=1e-4,2e-4", "--dry-run"],
        "siso-make-test-assets --help": [script("siso-make-test-assets"), "--help"],
        "siso-demo --help": [script("siso-demo"), "--help"],
    }


def measure(command: list[str], repeat: int) -> tuple[list[float], int]:
    times, code = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
        times.append(time.perf_counter() - started)
        code = proc.returncode
    return times, code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", default=None, help="markdown file (default results/cli-<machine>.md)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, command in commands(Path(scratch)).items():
            times, code = measure(command, args.repeat)
            rows.append((label, statistics.median(times), max(times), code))
            print(f"{label:55s} median {rows[-1][1]:5.2f} s  worst {rows[-1][2]:5.2f} s  exit {code}", flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        "# Command-line answers without a model (wall seconds)",
        "",
        f"Machine: {machine}; {args.repeat} runs each; goal: under {GOAL_SECONDS} s. Made by `benchmarks/bench_cli.py`.",
        "",
        "| command | median s | worst s | exit code |",
        "| --- | --- | --- | --- |",
        *[f"| {label} | {median:.2f} | {worst:.2f} | {code} |" for label, median, worst, code in rows],
        "",
    ]
    output = Path(args.output) if args.output else REPO / "benchmarks" / "results" / "cli-cpu.md"
    output.write_text("\n".join(lines))
    slow = [label for label, _, worst, _ in rows if worst >= GOAL_SECONDS]
    print(f"wrote {output}; {'all under' if not slow else 'OVER'} {GOAL_SECONDS} s" + (f": {', '.join(slow)}" if slow else ""))
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
