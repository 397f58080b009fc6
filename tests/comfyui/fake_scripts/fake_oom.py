"""Fake siso_lib run that dies of CUDA out-of-memory at step 3 without a LoRA."""
import sys

from fake_common import parse, progress, record_pid

args = parse()
record_pid()
progress(1, 50, -1.1)
progress(2, 50, -1.2)
print("Traceback (most recent call last):", file=sys.stderr)
print('  File "siso_lib/optimizer.py", line 300, in step', file=sys.stderr)
print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
      "23.65 GiB of which 1.02 GiB is free.", file=sys.stderr, flush=True)
sys.exit(1)
