"""Fake siso_lib run in an environment without diffusers."""
import sys

print("Traceback (most recent call last):", file=sys.stderr)
print('  File "siso_lib/sdxl.py", line 25, in <module>', file=sys.stderr)
print("ModuleNotFoundError: No module named 'diffusers'", file=sys.stderr, flush=True)
sys.exit(1)
