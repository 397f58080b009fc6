"""A tiny Grounding-DINO and a tiny SAM with random weights (features/detection.py's models), in
transformers' real classes, processors and save_pretrained layouts, so that editing's automatic
mask and the evaluation's crop run offline. They detect nothing meaningful. Grounding-DINO's text
side gets a word-level BERT vocabulary built here.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


# a word-level BERT vocabulary: common caption words and the DreamBooth subjects' names, plus
# letters and "##" letters so that any other lower-case word is spelled out instead of [UNK]
TINY_WORDS = (
    "a an the of in on at with and or photo picture image close up front side view background "
    "cat dog toy bear plushie teddy car rc person man woman boy girl bird duck horse sloth wolf monster robot "
    "backpack bag bowl cup can candle clock vase teapot sneaker shoe boot glasses sunglasses emoji poop "
    "red pink grey gray blue green white black shiny colorful fancy cartoon small big"
).split()
TINY_VOCABULARY = tuple(
    dict.fromkeys(  # "a" is a word and a letter: one id each
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","]
        + TINY_WORDS
        + list("abcdefghijklmnopqrstuvwxyz0123456789")
        + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    )
)
TINY_TEXT_LENGTH = 32  # Grounding-DINO's max_text_len (256 in the real model)
TINY_DETECTOR_SIDE = 128  # the short side its processor resizes images to (800 in the real one)
TINY_SAM_SIDE = 64  # SAM's square input (1024 in the real model)


def make_tiny_bert_tokenizer():
    """BertTokenizer (tokenizers backend) over TINY_VOCABULARY, lower-casing; built offline."""
    from transformers import BertTokenizer

    vocab = {token: i for i, token in enumerate(TINY_VOCABULARY)}
    return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=TINY_TEXT_LENGTH)


def build_tiny_grounding_dino():
    """(GroundingDinoForObjectDetection, GroundingDinoProcessor) with random weights (seed 4), ~0.14 M parameters."""
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    backbone = SwinConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4, out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(
        vocab_size=len(TINY_VOCABULARY), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=TINY_TEXT_LENGTH,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone, text_config=text, d_model=32,  # d_model: GroupNorm(32, d_model)
        num_queries=10, num_feature_levels=3, encoder_layers=1, decoder_layers=2,  # 2: the box heads are tied across layers
        encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_n_points=2, decoder_n_points=2, max_text_len=TINY_TEXT_LENGTH,
    )
    torch.manual_seed(4)
    model = GroundingDinoForObjectDetection(config).eval()
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": TINY_DETECTOR_SIDE, "longest_edge": 2 * TINY_DETECTOR_SIDE})
    return model, GroundingDinoProcessor(image_processor=image_processor, tokenizer=make_tiny_bert_tokenizer())


def build_tiny_sam():
    """(SamModel, SamProcessor) with random weights (seed 5), 64 px input, ~19 k parameters."""
    from transformers import SamConfig, SamImageProcessor, SamMaskDecoderConfig, SamModel, SamProcessor, SamPromptEncoderConfig, SamVisionConfig

    patch = 8
    config = SamConfig(
        vision_config=SamVisionConfig(
            hidden_size=16, output_channels=16, num_hidden_layers=2, num_attention_heads=2, image_size=TINY_SAM_SIDE,
            patch_size=patch, window_size=4, global_attn_indexes=[1], num_pos_feats=8, mlp_dim=32,
            initializer_range=0.02,  # SAM's 1e-10 would make the random encoder output constant
        ),
        prompt_encoder_config=SamPromptEncoderConfig(hidden_size=16, image_size=TINY_SAM_SIDE, patch_size=patch, mask_input_channels=4),
        mask_decoder_config=SamMaskDecoderConfig(hidden_size=16, mlp_dim=32, num_hidden_layers=1, num_attention_heads=2, iou_head_hidden_dim=16),
    )
    torch.manual_seed(5)
    model = SamModel(config).eval()
    low_res = TINY_SAM_SIDE // patch * 4  # the mask decoder upsamples the embedding 4 x
    image_processor = SamImageProcessor(
        size={"longest_edge": TINY_SAM_SIDE}, pad_size={"height": TINY_SAM_SIDE, "width": TINY_SAM_SIDE},
        mask_size={"longest_edge": low_res}, mask_pad_size={"height": low_res, "width": low_res},
    )
    return model, SamProcessor(image_processor=image_processor)


def _write(directory: str | os.PathLike, model, processor) -> str:
    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)


def write_tiny_grounding_dino(directory: str | os.PathLike) -> str:
    """Write the tiny Grounding-DINO (model + processor) to `directory`; return its absolute path."""
    return _write(directory, *build_tiny_grounding_dino())


def write_tiny_sam(directory: str | os.PathLike) -> str:
    """Write the tiny SAM (model + processor) to `directory`; return its absolute path."""
    return _write(directory, *build_tiny_sam())
