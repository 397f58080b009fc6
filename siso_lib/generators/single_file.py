"""Loading a whole single-file checkpoint (io/single_file.py says which) as a diffusers pipeline,
with no hub at run time.

diffusers' `from_single_file` converts the original-layout weights itself; what it needs besides
is a diffusers-format config folder: the component configs (single_file_configs.py, written out
here once per version into siso-lab's cache folder) and the tokenizers, which no checkpoint
holds. CLIP's tokenizers are rebuilt exactly from the BPE vocabulary open_clip_torch ships (a
siso-lab requirement). FLUX.1's T5 tokenizer is not shipped by any package: it is taken from
$SISO_T5_TOKENIZER (a folder with tokenizer.json; the ComfyUI node points it at ComfyUI's own
T5 tokenizer) or from a cached FLUX.1-schnell download, and its absence is one clear line.
$SISO_SINGLE_FILE_CONFIG replaces the shipped folder (another architecture, e.g. the tiny test
models).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from ..errors import SISOInputError, error_summary
from .single_file_configs import CLIP_TOKENIZERS, CONFIGS

CONFIG_ENV = "SISO_SINGLE_FILE_CONFIG"
T5_TOKENIZER_ENV = "SISO_T5_TOKENIZER"
FLUX_HUB_ID = "black-forest-labs/FLUX.1-schnell"


def cache_root() -> Path:
    """siso-lab's cache folder ($SISO_CACHE_DIR, else $XDG_CACHE_HOME/siso-lab, else ~/.cache/siso-lab)."""
    if os.environ.get("SISO_CACHE_DIR"):
        return Path(os.environ["SISO_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "siso-lab"


@lru_cache(maxsize=1)
def clip_bpe() -> tuple[dict[str, int], list[str]]:
    """CLIP's byte-level BPE vocabulary (49,408 tokens) and merges, from open_clip's packaged file."""
    import open_clip.tokenizer as oc_tokenizer

    path = Path(oc_tokenizer.__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
    merges = gzip.open(path).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    byte_tokens = list(oc_tokenizer.bytes_to_unicode().values())
    tokens = byte_tokens + [t + "</w>" for t in byte_tokens] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def write_clip_tokenizer(folder: Path, pad_token: str) -> None:
    """CLIP's tokenizer files (vocab.json, merges.txt, tokenizer_config.json) as the published pipelines have them."""
    vocab, merges = clip_bpe()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": pad_token}
    (folder / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, **special}), encoding="utf-8")


def t5_tokenizer_folder() -> Path:
    """A folder holding FLUX.1's T5 tokenizer: $SISO_T5_TOKENIZER, else a cached FLUX.1-schnell; SISOInputError if none."""
    given = os.environ.get(T5_TOKENIZER_ENV)
    if given:
        if not (Path(given) / "tokenizer.json").is_file() and not (Path(given) / "spiece.model").is_file():
            raise SISOInputError(f"{T5_TOKENIZER_ENV} {given!r} holds no T5 tokenizer (tokenizer.json or spiece.model)")
        return Path(given)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(FLUX_HUB_ID, "tokenizer_2/tokenizer.json")
        if isinstance(cached, str):
            return Path(cached).parent
    except Exception:  # noqa: BLE001 - no cache: the message below
        pass
    raise SISOInputError(
        f"a FLUX.1 single-file checkpoint holds no T5 tokenizer and none was found: set {T5_TOKENIZER_ENV} to a folder "
        "with T5's tokenizer.json (ComfyUI has one in comfy/text_encoders/t5_tokenizer; the SISO node sets it itself), "
        f"or give a diffusers folder or the hub id {FLUX_HUB_ID}"
    )


def config_folder(family: str) -> Path:
    """The diffusers config folder `family`'s single-file checkpoints load with: $SISO_SINGLE_FILE_CONFIG, else the
    shipped configs written out (once per content) under cache_root(), with the tokenizers."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    configs = CONFIGS[family]
    digest = hashlib.sha256(json.dumps(configs, sort_keys=True).encode()).hexdigest()[:12]
    target = cache_root() / "single-file-configs" / f"{family}-{digest}"
    if (target / "model_index.json").is_file():
        link_t5_tokenizer(target, family)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=target.parent))
    try:
        for name, content in configs.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        for name, pad_token in CLIP_TOKENIZERS[family].items():
            write_clip_tokenizer(staging / name, pad_token)
        os.replace(staging, target)  # whole or not at all; a folder another process wrote meanwhile wins
    except OSError:
        if not (target / "model_index.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    link_t5_tokenizer(target, family)
    return target


def link_t5_tokenizer(folder: Path, family: str) -> None:
    """FLUX: copy the T5 tokenizer found now into the config folder's tokenizer_2/ (refreshed each load)."""
    if family != "flux":
        return
    source = t5_tokenizer_folder()
    target = folder / "tokenizer_2"
    target.mkdir(exist_ok=True)
    for item in source.iterdir():
        if item.is_file() and item.suffix in (".json", ".model"):
            shutil.copyfile(item, target / item.name)


def load_single_file(pipeline_class, path: str, family: str, torch_dtype, **components):
    """`pipeline_class.from_single_file` on a whole checkpoint, offline; SISOInputError (one line) on failure."""
    folder = config_folder(family)
    try:
        return pipeline_class.from_single_file(
            str(path), config=str(folder), local_files_only=True, torch_dtype=torch_dtype, **components
        )
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as error:
        raise SISOInputError(
            f"single-file checkpoint {str(path)!r} could not be loaded as {family} ({error_summary(error)}): is it a "
            f"whole {'SDXL' if family == 'sdxl' else 'FLUX.1'} checkpoint? or give a diffusers folder"
        ) from error
