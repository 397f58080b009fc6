"""Fake siso_lib siso-generate / siso-edit that runs out of memory as siso-lab's commands do: two iterations (each with a
live preview when --preview_file is given), SISO_RESULT stop reason out_of_memory with the one error line (naming the
mode the memory model predicts would fit), that line on stderr, exit 1."""
import sys

from fake_common import parse, preview_progress, record_argv, record_pid, result

LINE = ("out of memory at iteration 3 in default mode: the memory model predicts low-memory fits this device: "
        "use --mode low-memory (or a smaller --resolution)")
args = parse()
record_pid()
record_argv()
preview_progress(1, 50, -1.1, args)
preview_progress(2, 50, -1.2, args)
print("siso: stopped: ran out of memory; best iteration 2 (total -1.2000)", file=sys.stderr)
result("out_of_memory", args.output_dir, stop_reason="out_of_memory", error=LINE)
print(f"siso-generate: error: {LINE}", file=sys.stderr, flush=True)
sys.exit(1)
