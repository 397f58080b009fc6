"""Stand-in for the authors' siso_generation_sdxl.py: upstream arguments only (unknown ones are
an argparse error), tqdm-style progress on stderr, only the diffusers LoRA file."""
import sys
import time

from fake_common import parse, record_argv, write_diffusers

args = parse(strict_upstream=True)
record_argv()
total = int(args.num_train_epochs)
for step in range(1, total + 1):
    sys.stderr.write(f"\rSteps: {100 * step // total:3d}%|####| {step}/{total} [00:0{step}<00:00, 1.00it/s]")
    sys.stderr.flush()
    time.sleep(0.02)
sys.stderr.write("\n")
write_diffusers(args.weights_output_dir)
sys.exit(0)
