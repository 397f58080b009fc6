"""benchmarks/bench_cli.py measures real commands; here only that each gives the right exit code
(help 0, bad input 2), so the benchmark's table never times a command that fails differently."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_cli.py"


def test_every_benchmarked_command_exits_as_expected(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_cli", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for label, command in bench.commands(tmp_path).items():
        _, code = bench.measure(command, repeat=1)
        expected = 0 if label.endswith("--help") or "--dry-run" in label else 2
        assert code == expected, (label, code)
