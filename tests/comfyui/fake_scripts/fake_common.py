"""Shared pieces of the fake SISO scripts (they stand in for siso_lib's siso-generate in tests).

Nothing heavy is imported: LoRA files are written with safetensors' numpy API.
"""

import argparse
import json
import os
import sys

import numpy as np


def parse(strict_upstream: bool = False):
    parser = argparse.ArgumentParser()
    for name in ("subject_image_path", "prompt", "output_dir", "weights_output_dir", "pretrained_model_name_or_path",
                 "ir_features_path", "dino_model_name", "num_train_epochs", "learning_rate", "seed", "resolution",
                 "rank", "early_stopping_max_count", "early_stopping_threshold_percentage", "num_inference_steps",
                 "dino_features_weight", "ir_features_weight", "lr_scheduler", "lr_warmup_steps", "train_batch_size",
                 "mixed_precision"):
        parser.add_argument(f"--{name}")
    parser.add_argument("--save_weights", action="store_true")
    parser.add_argument("--train_text_encoder", action="store_true")
    if strict_upstream:
        return parser.parse_args()
    parser.add_argument("--preview_file")  # siso-lab's own (the authors' scripts have none)
    args, _ = parser.parse_known_args()
    return args


def record_pid(extra=()):
    path = os.environ.get("FAKE_PID_FILE")
    if path:
        with open(path, "a") as handle:
            for pid in (os.getpid(), *extra):
                handle.write(f"{pid}\n")


def record_argv():
    path = os.environ.get("FAKE_ARGV_FILE")
    if path:
        with open(path, "w") as handle:
            json.dump(sys.argv[1:], handle)


def progress(step, total, loss):
    record = {"step": step, "total": total, "loss": loss, "dino": loss / 2, "ir": loss / 2,
              "best_step": step, "best_loss": loss, "patience": 0, "seconds": 0.01, "elapsed": 0.01 * step}
    print("SISO_PROGRESS " + json.dumps(record), flush=True)


def preview_progress(step, total, loss, args, broken=""):
    """A progress record with a live preview, as siso-lab's ProgressPrinter writes it: the iteration's image
    (a colour per step) saved to --preview_file, then named in the record ("preview"). `broken`: "missing" names
    a file that does not exist, "corrupt" a file that is no image."""
    record = {"step": step, "total": total, "loss": loss, "dino": loss / 2, "ir": loss / 2,
              "best_step": step, "best_loss": loss, "patience": 0, "seconds": 0.01, "elapsed": 0.01 * step}
    path = args.preview_file
    if path:
        if broken == "missing":
            path += ".missing.jpg"
        elif broken == "corrupt":
            with open(path, "wb") as handle:
                handle.write(b"\xff\xd8\xff not a JPEG after all")
        else:
            from PIL import Image

            Image.new("RGB", (64, 48), (40 * step, 100, 200)).save(path + ".partial.jpg")
            os.replace(path + ".partial.jpg", path)
        record["preview"] = path
    print("SISO_PROGRESS " + json.dumps(record), flush=True)


def write_kohya(folder):
    from safetensors.numpy import save_file

    path = os.path.join(folder, "siso_lora_kohya.safetensors")
    save_file({"lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight": np.zeros((4, 8), np.float32),
               "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight": np.zeros((8, 4), np.float32),
               "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.alpha": np.array(4.0, np.float32)}, path)
    return path


def write_diffusers(folder, name="pytorch_lora_weights.safetensors"):
    from safetensors.numpy import save_file

    path = os.path.join(folder, name)
    save_file({"unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight": np.ones((4, 8), np.float32),
               "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight": np.ones((8, 4), np.float32),
               "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.down.weight": np.ones((4, 8), np.float32),
               "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.up.weight": np.ones((8, 4), np.float32)},
              path)
    return path


def write_image(folder):
    from PIL import Image

    path = os.path.join(folder, "result.png")
    Image.new("RGB", (64, 48), (200, 30, 10)).save(path)
    return path


def result(status, folder, **extra):
    record = {"status": status, "stop_reason": extra.pop("stop_reason", "max_steps"), "steps_run": 3, "best_step": 3,
              "best_losses": {"total": -1.5}, "error": extra.pop("error", None), "output_dir": folder,
              "weights_dir": folder, **extra}
    print("SISO_RESULT " + json.dumps(record), flush=True)
