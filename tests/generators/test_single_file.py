"""Single-file checkpoints (ComfyUI's models/checkpoints): recognised from their header, loaded with
diffusers' from_single_file and a config shipped with siso-lab, never from the hub."""

from __future__ import annotations

import json
import socket
import struct

import pytest
import torch

from siso_lib.errors import SISOInputError
from siso_lib.generators import single_file
from siso_lib.generators.single_file_configs import CONFIGS
from siso_lib.io.model_paths import check_local_base_model, detect_family
from siso_lib.io.single_file import single_file_family
from single_file_checkpoint import write_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """(checkpoint file, diffusers folder of the same pipeline, its config folder without weights)."""
    folder = tmp_path_factory.mktemp("single-file")
    checkpoint, config = write_tiny_checkpoint(folder)
    return checkpoint, folder / "tiny-sdxl-wide", config


def write_header_only(path, keys):
    """A .safetensors file whose header names `keys` (zero-size tensors): enough for detection."""
    header = json.dumps({key: {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for key in keys}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: loading must not reach the hub."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def image(pipe):
    return pipe("a photo of a cat", num_inference_steps=1, guidance_scale=0.0, height=64, width=64,
                generator=torch.Generator().manual_seed(0), output_type="pt").images


def test_from_single_file_reproduces_the_pipeline_offline(tiny_checkpoint, monkeypatch, no_network):
    from diffusers import StableDiffusionXLPipeline

    from siso_lib.generators.sdxl import SDXLGenerator

    checkpoint, folder, config = tiny_checkpoint
    assert detect_family(str(checkpoint)) == "sdxl"
    check_local_base_model(str(checkpoint), "sdxl")  # a whole checkpoint is a valid base model
    monkeypatch.setenv(single_file.CONFIG_ENV, str(config))
    loaded = SDXLGenerator.load_pipeline(str(checkpoint))
    reference = StableDiffusionXLPipeline.from_pretrained(str(folder))
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours, theirs = getattr(loaded, name).state_dict(), getattr(reference, name).state_dict()
        assert set(ours) == set(theirs), name
        assert all(torch.equal(ours[key], theirs[key]) for key in theirs), name
    assert (image(loaded) - image(reference)).abs().max().item() < 1e-5


def test_partial_and_foreign_files_are_refused_in_one_line(tmp_path):
    unet_only = write_header_only(tmp_path / "sdxl_unet.safetensors", ["input_blocks.0.0.weight", "label_emb.0.0.weight"])
    transformer_only = write_header_only(tmp_path / "flux1-schnell.safetensors", ["double_blocks.0.img_attn.qkv.weight"])
    other = write_header_only(tmp_path / "lora.safetensors", ["lora_unet_x.lora_down.weight"])
    flux_whole = write_header_only(tmp_path / "flux_whole.safetensors", [
        "model.diffusion_model.double_blocks.0.img_attn.qkv.weight", "text_encoders.clip_l.transformer.x",
        "text_encoders.t5xxl.transformer.shared.weight", "vae.decoder.conv_in.weight"])
    not_safetensors = tmp_path / "photo.safetensors"
    not_safetensors.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    assert single_file_family(flux_whole) == "flux" and detect_family(str(flux_whole)) == "flux"
    for path, words in ((unet_only, "holds only part of a SDXL pipeline"), (transformer_only, "holds only part of a FLUX.1"),
                        (other, "of no pipeline SISO knows"), (not_safetensors, "is not a readable .safetensors")):
        with pytest.raises(SISOInputError, match=words) as caught:
            check_local_base_model(str(path), "sdxl")
        assert "\n" not in str(caught.value)
    with pytest.raises(SISOInputError, match="is a FLUX.1 checkpoint, not SDXL"):
        check_local_base_model(str(flux_whole), "sdxl")


def test_the_shipped_configs_are_the_published_architectures(tmp_path, monkeypatch):
    """The configs written out for SDXL-Turbo and FLUX.1-schnell build the same models as the project's full-size
    builders (on the meta device: no memory), and their CLIP tokenizers are the exact ones."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel, UNet2DConditionModel
    from transformers import AutoConfig

    from siso_lib.offline.tiny_models import build_flux_pipeline, build_sdxl_pipeline
    from siso_lib.offline.tokenizers import make_clip_tokenizer

    monkeypatch.setenv("SISO_CACHE_DIR", str(tmp_path))
    t5 = tmp_path / "t5"
    t5.mkdir()
    (t5 / "tokenizer.json").write_text("{}")
    monkeypatch.setenv(single_file.T5_TOKENIZER_ENV, str(t5))
    built = {"sdxl": build_sdxl_pipeline("full", device="meta"), "flux": build_flux_pipeline("full", device="meta")}
    classes = {"unet": UNet2DConditionModel, "transformer": FluxTransformer2DModel, "vae": AutoencoderKL}
    for family, pipe in built.items():
        folder = single_file.config_folder(family)
        assert folder.parent.parent == tmp_path and json.loads((folder / "model_index.json").read_text()) == json.loads(
            json.dumps(CONFIGS[family]["model_index.json"]))
        for name, cls in classes.items():
            if (folder / name).is_dir():
                ours = cls.load_config(str(folder / name))
                theirs = dict(getattr(pipe, name).config)
                assert {key: value for key, value in ours.items() if not key.startswith("_")} == {
                    key: (list(theirs[key]) if isinstance(theirs[key], tuple) else theirs[key])
                    for key in ours if not key.startswith("_")}, (family, name)
        for name in ("text_encoder", "text_encoder_2"):
            ours = AutoConfig.from_pretrained(str(folder / name)).to_dict()
            theirs = getattr(pipe, name).config.to_dict()
            keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "projection_dim",
                    "hidden_act", "d_model", "d_ff", "num_layers", "num_heads", "d_kv", "vocab_size")
            assert {k: ours.get(k) for k in keys} == {k: theirs.get(k) for k in keys}, (family, name)
        assert (folder / "tokenizer_2" / "tokenizer.json").is_file() == (family == "flux")
    from transformers import CLIPTokenizer

    sdxl = single_file.config_folder("sdxl")
    for name, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
        ours, theirs = CLIPTokenizer.from_pretrained(str(sdxl / name)), make_clip_tokenizer(pad)
        prompt = "a photo of a sks dog, wearing a Red hat!"
        assert ours(prompt, padding="max_length", max_length=77).input_ids == theirs(prompt, padding="max_length",
                                                                                    max_length=77).input_ids


def test_a_flux_checkpoint_without_a_t5_tokenizer_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("SISO_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(single_file.T5_TOKENIZER_ENV, raising=False)
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *args, **kwargs: None)
    with pytest.raises(SISOInputError, match="holds no T5 tokenizer and none was found: set SISO_T5_TOKENIZER"):
        single_file.config_folder("flux")
