"""diffusers -> Kohya key conversion (for scripts that write only the diffusers LoRA file); FLUX files kept as they are."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfyui.siso import lora_keys
from comfyui.siso.kohya import to_kohya
from siso_lib.io.lora import KOHYA_WEIGHT_NAME, DIFFUSERS_WEIGHT_NAME, save_lora_files


def best_lora(rank: int = 4) -> dict[str, dict[str, torch.Tensor]]:
    """A small LoRA in siso_lib's peft naming, one module of each kind per part."""
    generator = torch.Generator().manual_seed(0)

    def pair(out_features: int, in_features: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(rank, in_features, generator=generator), torch.randn(out_features, rank, generator=generator)

    parts: dict[str, dict[str, torch.Tensor]] = {"unet": {}, "text_encoder": {}, "text_encoder_2": {}}
    for module in ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
                   "up_blocks.0.attentions.2.transformer_blocks.9.attn2.to_out.0",
                   "mid_block.attentions.0.transformer_blocks.0.attn2.to_k"):
        a, b = pair(16, 8)
        parts["unet"][f"{module}.lora_A.weight"], parts["unet"][f"{module}.lora_B.weight"] = a, b
    # transformers >= 5.6 names CLIP-L modules without `text_model.`: both spellings must come out the same
    for part, module in (("text_encoder", "encoder.layers.0.self_attn.q_proj"),
                         ("text_encoder_2", "text_model.encoder.layers.31.self_attn.out_proj")):
        a, b = pair(8, 8)
        parts[part][f"{module}.lora_A.weight"], parts[part][f"{module}.lora_B.weight"] = a, b
    return parts


@pytest.mark.parametrize("alpha", [4.0, 8.0])
def test_conversion_equals_siso_libs_kohya_file(tmp_path, alpha):
    paths = save_lora_files(tmp_path, best_lora(), rank=4, alpha=alpha, run_metadata={"prompt": "a cat"})
    reference = load_file(paths["kohya"])
    converted_path = tmp_path / "converted.safetensors"
    summary = lora_keys.convert_file(paths["diffusers"], str(converted_path))
    converted = load_file(str(converted_path))
    assert set(converted) == set(reference)
    for key, value in reference.items():
        torch.testing.assert_close(converted[key], value, msg=key)
    assert converted["lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.alpha"].item() == alpha
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in converted
    assert summary == {"unet": 3, "transformer": 0, "te1": 1, "te2": 1, "other": 0}


def test_formats_are_recognised(tmp_path):
    paths = save_lora_files(tmp_path, best_lora(), rank=4, alpha=4.0, run_metadata={})
    assert paths["diffusers"].endswith(DIFFUSERS_WEIGHT_NAME) and paths["kohya"].endswith(KOHYA_WEIGHT_NAME)
    assert lora_keys.key_format(load_file(paths["diffusers"]).keys()) == "diffusers"
    assert lora_keys.key_format(load_file(paths["kohya"]).keys()) == "kohya"
    assert lora_keys.key_format(["unet.a.lora.down.weight", "lora_unet_a.lora_down.weight"]) == "mixed"
    assert lora_keys.key_format(["something.else"]) == "unknown"
    assert lora_keys.summarize(load_file(paths["kohya"]).keys()) == {"unet": 3, "transformer": 0, "te1": 1, "te2": 1, "other": 0}


def test_without_metadata_alpha_is_the_rank(tmp_path):
    state = {
        "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight": torch.ones(8, 32),
        "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight": torch.ones(32, 8),
        "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_k.lora_A.weight": torch.ones(8, 32),
        "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_k.lora_B.weight": torch.ones(32, 8),
    }
    converted = to_kohya(state)
    assert converted["lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.alpha"].item() == 8.0
    assert "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_k.lora_up.weight" in converted


def test_unplaceable_keys_are_refused():
    with pytest.raises(ValueError, match="neither diffusers"):
        to_kohya({"model.diffusion_model.x.weight": torch.ones(1)})


def test_node_reads_a_diffusers_file_in_kohya_keys(tmp_path):
    paths = save_lora_files(tmp_path, best_lora(), rank=4, alpha=4.0, run_metadata={})
    state, metadata = lora_keys.read_lora(paths["diffusers"])
    assert lora_keys.key_format(state.keys()) == "kohya" and "lora_adapter_metadata" in metadata
    plain = tmp_path / "kohya_only.safetensors"
    save_file(load_file(paths["kohya"]), str(plain))
    state, _ = lora_keys.read_lora(str(plain))
    assert set(state) == set(load_file(paths["kohya"]))


def flux_lora(rank: int = 4) -> dict[str, dict[str, torch.Tensor]]:
    """A small FLUX LoRA in siso_lib's peft naming: double- and single-block attention, feed-forward, CLIP-L."""
    generator = torch.Generator().manual_seed(1)
    parts: dict[str, dict[str, torch.Tensor]] = {"transformer": {}, "text_encoder": {}}
    for part, module in (("transformer", "transformer_blocks.0.attn.to_q"), ("transformer", "transformer_blocks.0.attn.add_k_proj"),
                         ("transformer", "transformer_blocks.0.ff_context.net.2"), ("transformer", "single_transformer_blocks.3.attn.to_v"),
                         ("text_encoder", "encoder.layers.0.self_attn.q_proj")):
        parts[part][f"{module}.lora_A.weight"] = torch.randn(rank, 8, generator=generator)
        parts[part][f"{module}.lora_B.weight"] = torch.randn(8, rank, generator=generator)
    return parts


def test_a_flux_file_is_recognised_and_read_as_it_is(tmp_path):
    """siso_lib writes FLUX LoRAs in diffusers/peft keys only; ComfyUI maps those itself, so nothing is converted."""
    paths = save_lora_files(tmp_path, flux_lora(), rank=4, alpha=4.0, run_metadata={"prompt": "a cat"}, family="flux")
    assert paths["kohya"] is None and paths["diffusers"].endswith(DIFFUSERS_WEIGHT_NAME)
    written = load_file(paths["diffusers"])
    assert lora_keys.key_format(written.keys()) == "transformer"
    assert "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight" in written  # CLIP-L, text_model. level kept
    assert lora_keys.summarize(written.keys()) == {"unet": 0, "transformer": 4, "te1": 1, "te2": 0, "other": 0}
    state, metadata = lora_keys.read_lora(paths["diffusers"])
    assert set(state) == set(written) and "lora_adapter_metadata" in metadata
    for key, value in written.items():
        torch.testing.assert_close(state[key], value, msg=key)
    # a transformer LoRA is never mistaken for an SDXL one (or converted half-way)
    assert lora_keys.key_format(["transformer.a.lora_A.weight", "unet.b.lora.down.weight"]) == "mixed"
    assert lora_keys.key_format(["transformer.a.lora_A.weight", "transformer.a.lora_B.weight"]) == "transformer"
