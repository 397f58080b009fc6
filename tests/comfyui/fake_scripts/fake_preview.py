"""Fake siso_lib siso-generate / siso-edit with live previews: each iteration writes --preview_file (as siso-lab's
ProgressPrinter does: atomically, <= 512 px) and names it in its progress record; FAKE_PREVIEW=missing names a
file that is not there, FAKE_PREVIEW=corrupt one that is no image. Then both LoRA files, result.png, exit 0."""
import os
import sys

from fake_common import parse, preview_progress, record_argv, record_pid, result, write_diffusers, write_image, write_kohya

args = parse()
record_pid()
record_argv()
total = int(args.num_train_epochs)
for step in range(1, min(total, 3) + 1):
    preview_progress(step, total, -1.0 - step / 10, args, os.environ.get("FAKE_PREVIEW", ""))
folder = args.weights_output_dir or args.output_dir
kohya, diffusers, image = write_kohya(folder), write_diffusers(folder), write_image(args.output_dir)
result("success", folder, lora_path=diffusers, kohya_path=kohya, result_image=image)
sys.exit(0)
