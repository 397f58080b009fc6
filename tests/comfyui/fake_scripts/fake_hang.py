"""Fake siso_lib run that hangs until cancelled; it starts a grandchild too.

On SIGTERM it writes the best LoRA so far and exits 143, like siso-generate, unless
FAKE_IGNORE_SIGTERM=1 (then only SIGKILL stops it).
"""
import os
import signal
import subprocess
import sys
import time

from fake_common import parse, progress, record_pid, write_kohya

args = parse()
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
record_pid([grandchild.pid])


def on_term(signum, frame):
    if os.environ.get("FAKE_IGNORE_SIGTERM") == "1":
        print("ignoring SIGTERM", file=sys.stderr, flush=True)
        return
    write_kohya(args.weights_output_dir)
    print("siso: interrupted: best LoRA so far written", file=sys.stderr, flush=True)
    sys.exit(143)


signal.signal(signal.SIGTERM, on_term)
step = 0
while True:
    step += 1
    progress(step, 100000, -1.0)
    time.sleep(0.2)
