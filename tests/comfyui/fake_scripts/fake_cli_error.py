"""Fake siso_lib run that reports bad input the way siso-generate does (one 'error:' line, exit 2)."""
import sys

print("siso: loading", file=sys.stderr)
print("error: resolution 500 is not usable: give a multiple of 8 between 64 and 2048 (512 for SDXL-Turbo)",
      file=sys.stderr, flush=True)
sys.exit(2)
