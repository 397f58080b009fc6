"""Fake siso_lib run that cannot find a file."""
import sys

print("Traceback (most recent call last):", file=sys.stderr)
print("FileNotFoundError: [Errno 2] No such file or directory: '/models/vae/config.json'", file=sys.stderr, flush=True)
sys.exit(1)
