"""Fake siso_lib siso-edit: progress lines with the background term (and a live preview with --preview_file), result.png, before_after.png and mask.png
in --output_dir, a description of the inputs it got (fake_inputs.json), SISO_RESULT, exit 0."""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image

from fake_common import record_argv, record_pid

parser = argparse.ArgumentParser()
for name in ("input_image_path", "subject_image_path", "mask", "output_dir", "num_train_epochs", "resolution", "prompt",
             "input_class", "preview_file"):
    parser.add_argument(f"--{name}")
args, _ = parser.parse_known_args()
record_pid()
record_argv()
total, size = int(args.num_train_epochs), int(args.resolution)
for step in range(1, min(total, 3) + 1):
    record = {"step": step, "total": total, "loss": -1.0 - step / 10, "dino": -0.6, "ir": -0.6, "background": 0.02 / step,
              "best_step": step, "best_loss": -1.0 - step / 10, "patience": 0, "seconds": 0.01, "elapsed": 0.01 * step}
    if args.preview_file:  # a live preview, as siso-lab's ProgressPrinter writes it
        partial = args.preview_file + ".partial" + os.path.splitext(args.preview_file)[1]
        Image.new("RGB", (32, 32), (40 * step, 100, 200)).save(partial)
        os.replace(partial, args.preview_file)
        record["preview"] = args.preview_file
    print("SISO_PROGRESS " + json.dumps(record), flush=True)
print("siso: a log line on stderr", file=sys.stderr, flush=True)
out = args.output_dir
with Image.open(args.input_image_path) as scene, Image.open(args.subject_image_path) as subject:
    inputs = {"scene": list(scene.size), "subject": list(subject.size), "subject_pixel": list(subject.convert("RGB").getpixel((0, 0)))}
    edited = scene.convert("RGB").resize((size, size))
if args.mask:
    with Image.open(args.mask) as mask:
        region = np.asarray(mask.convert("L")) > 127
        inputs["mask"] = {"size": list(mask.size), "white": float(region.mean()), "mode": mask.mode}
with open(os.path.join(out, "fake_inputs.json"), "w") as handle:
    json.dump(inputs, handle)
result = os.path.join(out, "result.png")
edited.save(result)
strip = os.path.join(out, "before_after.png")
edited.save(strip)
Image.new("L", (size, size), 255).save(os.path.join(out, "mask.png"))
print("SISO_RESULT " + json.dumps({"status": "success", "stop_reason": "max_steps", "steps_run": min(total, 3),
                                   "best_step": min(total, 3), "best_losses": {"total": -1.3, "background": 0.0067},
                                   "error": None, "result_image": result, "before_after": strip}), flush=True)
sys.exit(0)
