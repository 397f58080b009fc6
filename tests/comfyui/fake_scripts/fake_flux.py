"""Fake siso_lib siso-generate for a FLUX base model: progress, ONLY the diffusers-format LoRA
(transformer + CLIP-L keys, as siso_lib writes for FLUX; no Kohya file), result.png, exit 0."""
import os
import sys

import numpy as np
from fake_common import parse, progress, record_argv, record_pid, result, write_image

args = parse()
record_pid()
record_argv()
total = int(args.num_train_epochs)
for step in range(1, min(total, 2) + 1):
    progress(step, total, -1.0 - step / 10)
folder = args.weights_output_dir
from safetensors.numpy import save_file  # noqa: E402

path = os.path.join(folder, "pytorch_lora_weights.safetensors")
save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": np.ones((4, 8), np.float32),
           "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": np.ones((8, 4), np.float32),
           "transformer.single_transformer_blocks.0.attn.to_k.lora_A.weight": np.ones((4, 8), np.float32),
           "transformer.single_transformer_blocks.0.attn.to_k.lora_B.weight": np.ones((8, 4), np.float32),
           "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": np.ones((4, 8), np.float32),
           "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": np.ones((8, 4), np.float32)},
          path, metadata={"format": "pt"})
image = write_image(args.output_dir)
result("success", folder, lora_path=path, kohya_path=None, result_image=image)
sys.exit(0)
