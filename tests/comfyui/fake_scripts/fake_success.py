"""Fake siso_lib siso-generate: three progress lines, both LoRA files, result.png, exit 0."""
import os
import sys

from fake_common import parse, progress, record_argv, record_pid, result, write_diffusers, write_image, write_kohya

args = parse()
record_pid()
record_argv()
total = int(args.num_train_epochs)
for step in range(1, min(total, 3) + 1):
    progress(step, total, -1.0 - step / 10)
print("siso: a log line on stderr", file=sys.stderr, flush=True)
folder = args.weights_output_dir
kohya, diffusers, image = write_kohya(folder), write_diffusers(folder), write_image(args.output_dir)
result("success", folder, lora_path=diffusers, kohya_path=kohya, result_image=image)
sys.exit(0)
