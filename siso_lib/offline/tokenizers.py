"""Tokenizers built offline, in the formats of the real ones (no hub is reachable here).

CLIP's is exact: its 49,408-token byte-level BPE vocabulary is rebuilt from the file open_clip_torch
ships. T5's (FLUX) and Gemma's (Sana) cannot be rebuilt exactly; they are made from English words
of that same CLIP vocabulary, in the real tokenizers' formats (T5: SentencePiece Unigram, unknown
characters -> <unk>; Gemma: SentencePiece BPE with byte fallback), so a common word is one token
and a rarer one is spelled out, and prompts take a realistic number of tokens.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache

# How many English words the offline T5/Gemma vocabularies take from CLIP's (most frequent first),
# and how many of those also get a capitalised piece (sentence starts in Sana's long instruction).
WORD_PIECES, CAPITALISED_PIECES = 12000, 3000

@lru_cache(maxsize=1)
def clip_vocabulary() -> tuple[dict[str, int], list[str]]:
    """CLIP's byte-level BPE vocab (49,408 tokens) and merges, from open_clip's packaged file."""
    import open_clip.tokenizer as oc_tokenizer

    path = os.path.join(os.path.dirname(oc_tokenizer.__file__), "bpe_simple_vocab_16e6.txt.gz")
    merges = gzip.open(path).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    byte_tokens = list(oc_tokenizer.bytes_to_unicode().values())
    tokens = byte_tokens + [t + "</w>" for t in byte_tokens] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def make_clip_tokenizer(pad_token: str):
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocabulary()
    return CLIPTokenizer(
        vocab=vocab,
        merges=[tuple(m.split()) for m in merges],
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token=pad_token,
        model_max_length=77,
    )


# printable ASCII without the space: the single-character pieces every offline vocabulary has
PRINTABLE_ASCII = tuple(chr(code) for code in range(33, 127))


@lru_cache(maxsize=1)
def english_word_pieces() -> tuple[str, ...]:
    """SentencePiece word pieces ("▁" + word) for the offline T5 and Gemma vocabularies.

    The WORD_PIECES most frequent lowercase English words of CLIP's vocabulary (CLIP's merges are
    ordered by frequency, and a token ending in "</w>" is a whole word), then the first
    CAPITALISED_PIECES of them capitalised. About 15,000 pieces; deterministic.
    """
    vocab, _ = clip_vocabulary()
    words = []
    for token in sorted(vocab, key=vocab.get):
        word = token[: -len("</w>")]
        if token.endswith("</w>") and word.isascii() and word.isalpha() and word.islower():
            words.append(word)
    words = words[:WORD_PIECES]
    return tuple("▁" + word for word in words) + tuple("▁" + word.capitalize() for word in words[:CAPITALISED_PIECES])


def make_t5_tokenizer():
    """FLUX's tokenizer_2: a T5 tokenizer in T5-v1.1's format (a SentencePiece Unigram model).

    Ids: <pad> 0, </s> 1, <unk> 2, "▁", printable ASCII, the English word pieces, then the 100
    <extra_id_*> sentinels that T5 tokenizers append (about 15,200 in all; the real one has 32,100, the
    model's table 32,128). Encoding appends </s>; characters outside the vocabulary become <unk>, as
    with the real one. Built through the class's own constructor, so from_pretrained rebuilds the same.
    """
    from transformers import T5TokenizerFast

    # Unigram picks the segmentation with the highest total score: a word piece (-1) beats "▁" (-2)
    # plus its spelling (-3 a character), so known words are one token and others are spelled out
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(char, -3.0) for char in PRINTABLE_ASCII]
    vocab += [(piece, -1.0) for piece in english_word_pieces()]
    return T5TokenizerFast(vocab=vocab, extra_ids=100, model_max_length=512)


def gemma_bpe_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocab and merges of the offline Gemma tokenizer (SentencePiece BPE with byte fallback).

    Ids: <pad> 0, <eos> 1, <bos> 2, <unk> 3, <mask> 4 (as gemma-2's), the 256 byte-fallback tokens
    <0x00>..<0xFF>, "▁", printable ASCII, then every prefix of every word piece (about 31,600 in all;
    the real one has 256,000).
    Each piece is reached left to right ("▁p" + "h" -> "▁ph", ...) and no merge starts with anything
    but a "▁"-prefix, so BPE grows each word from its "▁" to the longest piece in the vocabulary and
    spells out the rest; any other character falls back to its UTF-8 bytes.
    """
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    vocab.update({f"<0x{byte:02X}>": 5 + byte for byte in range(256)})
    for char in ("▁",) + PRINTABLE_ASCII:
        vocab.setdefault(char, len(vocab))
    merges, made = [], set()
    for piece in english_word_pieces():
        for end in range(2, len(piece) + 1):
            if piece[:end] not in made:
                made.add(piece[:end])
                merges.append((piece[: end - 1], piece[end - 1]))
    merges.sort(key=lambda merge: len(merge[0]))  # shorter prefixes rank first
    for left, right in merges:
        vocab[left + right] = len(vocab)
    return vocab, merges


def make_gemma_tokenizer():
    """Sana's tokenizer: a Gemma tokenizer in gemma-2's format (BPE with byte fallback, see gemma_bpe_vocabulary).

    Prepends <bos> and pads on the right, as the tokenizer in Sana's diffusers folders; encodes any
    text, which SanaPipeline needs (it prepends a long English "complex human instruction" to every prompt).
    """
    from transformers import GemmaTokenizerFast

    vocab, merges = gemma_bpe_vocabulary()
    return GemmaTokenizerFast(
        vocab=vocab,
        merges=merges,
        add_bos_token=True,  # explicit: otherwise the tokenizers backend builds a post-processor without <bos>
        add_eos_token=False,
        padding_side="right",
        model_max_length=8192,
    )


# the special tokens of a Qwen3 tokenizer that a chat prompt uses (ids after the vocabulary's)
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
# Qwen3's chat template reduced to what Flux2KleinPipeline asks of it: user turns, the assistant's
# turn opened, and with enable_thinking=False an empty thinking block (as Qwen3's own template writes it)
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif -%}"
    "{%- endif -%}"
)


@lru_cache(maxsize=1)
def qwen_bpe_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocab and merges of the offline Qwen3 tokenizer (byte-level BPE, as GPT-2's and Qwen's).

    Ids: the 256 byte symbols, then every prefix of every English word piece written with its
    leading space ("Ġcat"), then the special tokens. As in gemma_bpe_vocabulary, merges only ever
    extend a word from its leading space, so a known word is one token and anything else is
    spelled out byte by byte (about 31,000 tokens; the real one has 151,669).
    """
    import open_clip.tokenizer as oc_tokenizer

    symbols = oc_tokenizer.bytes_to_unicode()  # GPT-2's byte -> printable character table
    space = symbols[ord(" ")]
    vocab = {symbols[byte]: byte for byte in range(256)}
    merges = []
    for piece in english_word_pieces():
        piece = space + piece[1:]
        for end in range(2, len(piece) + 1):
            if piece[:end] not in vocab:
                vocab[piece[:end]] = len(vocab)
                merges.append((piece[: end - 1], piece[end - 1]))
    for token in QWEN_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    return vocab, merges


def make_qwen3_tokenizer():
    """FLUX.2 [klein]'s tokenizer: a Qwen2TokenizerFast (byte-level BPE) with a Qwen3-style chat
    template; pads with <|endoftext|> on the right. Any text encodes; from_pretrained rebuilds it."""
    from transformers import Qwen2TokenizerFast

    vocab, merges = qwen_bpe_vocabulary()
    return Qwen2TokenizerFast(
        vocab=vocab, merges=merges, chat_template=QWEN_CHAT_TEMPLATE, model_max_length=131072,
        additional_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
    )
