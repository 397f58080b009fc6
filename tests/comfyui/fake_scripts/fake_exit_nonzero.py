"""Fake siso_lib run that crashes with an unexpected exception (exit 3)."""
import sys

from fake_common import parse, record_pid

parse()
record_pid()
print("Traceback (most recent call last):", file=sys.stderr)
print('  File "x.py", line 1, in <module>', file=sys.stderr)
print("RuntimeError: the scheduler exploded", file=sys.stderr, flush=True)
sys.exit(3)
