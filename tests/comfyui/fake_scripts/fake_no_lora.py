"""Fake siso_lib run that claims success (exit 0) but writes no LoRA."""
import sys

from fake_common import parse, progress, record_pid

parse()
record_pid()
progress(1, 2, -1.0)
progress(2, 2, -1.1)
sys.exit(0)
