"""Fake siso_lib run whose one-line error is long (a hub error quoting a long message), exit 2.

The message is FAKE_ERROR_TEXT when set, else a base-model error of ~700 characters.
"""
import os
import sys

default = (
    "base model 'stabilityai/sdxl-turbo' could not be loaded (We couldn't connect to the model hub to load the "
    "files, and couldn't find them in the cached files. Check your internet connection or see how to run the "
    "library in offline mode; the repository stabilityai/sdxl-turbo was asked for model_index.json, "
    "unet/diffusion_pytorch_model.safetensors, vae/diffusion_pytorch_model.safetensors, "
    "text_encoder/model.safetensors and text_encoder_2/model.safetensors, and none of them is in the cache "
    "folder): give a local SDXL diffusers folder or a hub id you have downloaded, e.g. run "
    "huggingface-cli download stabilityai/sdxl-turbo once with network access"
)
print("error: " + os.environ.get("FAKE_ERROR_TEXT", default), file=sys.stderr, flush=True)
sys.exit(2)
