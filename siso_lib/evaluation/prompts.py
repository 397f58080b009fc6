"""Evaluation prompts: templates with the subject's class filled in.

A template names the subject by its class, the way DreamBench does (Ruiz et al., DreamBooth,
arXiv 2208.12242, `dataset/prompts_and_classes.txt`): SISO's LoRA needs no identifier token, so
DreamBench's "a {0} {1} in the jungle" (unique token, class) becomes "a cat in the jungle".
Understood placeholders: `{class}`, `{}`, and DreamBench's `{0}` (dropped) and `{1}` (class).
A template without a placeholder is used as written.

A prompt file is UTF-8 text, one template per line; blank lines and lines starting with `#` are
skipped. A line in the Python form of DreamBench's file, `'a {0} {1} in the jungle'.format(
unique_token, class_token),`, is read as the quoted template, so its object or live-subject list
can be pasted as it is. We do not ship DreamBench's text; `GENERIC_TEMPLATES` (ours) is the
default when no prompt is given.

Nothing here imports torch: `siso-eval` checks its prompts before loading any model.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import SISOInputError, check_file, setting

# written for this project: places, styles and settings that differ from the training prompt, so
# that CLIP-T measures whether the LoRA still follows the text, plus the plain photo for identity
GENERIC_TEMPLATES = (
    "a photo of a {class}",
    "a {class} on the beach",
    "a {class} in the snow",
    "a {class} on a wooden kitchen table",
    "a {class} in a city street at night",
    "a {class} in a forest",
    "a watercolor painting of a {class}",
    "a {class} with a mountain in the background",
)

_PYTHON_FORM = re.compile(r"""^\s*(['"])(?P<template>.*?)\1\s*\.format\(""")
_TRAINING_PREFIX = re.compile(
    r"^\s*(?:an?\s+)?(?:high[- ]quality\s+)?(?:photo|photograph|picture|image|portrait)\s+of\s+(?:an?|the|my|one)?\s*",
    re.IGNORECASE,
)


def fill_template(template: str, class_name: str) -> str:
    """`template` with the class name in its placeholder; whitespace collapsed. SISOInputError for
    any other placeholder (a typo such as `{clas}` must not reach the picture as text).

    >>> fill_template("a {0} {1} in the jungle", "cat")
    'a cat in the jungle'
    """
    text = template.replace("{class}", "\0").replace("{1}", "\0").replace("{0}", "").replace("{}", "\0")
    unknown = re.search(r"\{[^{}]*\}", text)
    if unknown:
        raise SISOInputError(f"prompt {template!r} has the placeholder {unknown.group(0)}: use {{class}} (or {{}}) for the subject's class")
    return re.sub(r"\s+", " ", text.replace("\0", class_name)).strip()


def guess_class_name(prompt: str) -> str:
    """The class a training prompt names: "a photo of a cat" -> "cat"; otherwise the prompt itself."""
    stripped = _TRAINING_PREFIX.sub("", prompt).strip(" .,")
    return stripped or prompt.strip()


def read_prompt_file(path: str | os.PathLike) -> list[str]:
    """Templates from a prompt file (format in the module docstring); SISOInputError if none."""
    path = Path(path)
    check_file(path, "prompt file", "give a text file with one prompt per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise SISOInputError(f"prompt file {str(path)!r} is not UTF-8 text ({error.reason}): save it as UTF-8, one prompt per line") from error
    templates = []
    for line in lines:
        python_form = _PYTHON_FORM.match(line)
        if python_form:
            templates.append(python_form.group("template"))
        elif line.strip() and not line.lstrip().startswith("#"):
            templates.append(line.strip())
    if not templates:
        raise SISOInputError(f"prompt file {str(path)!r} holds no prompt: write one prompt per line ('a {{class}} on the beach')")
    return templates


def evaluation_prompts(class_name: str, templates: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The prompts to render: each template filled with `class_name`, duplicates removed, order kept."""
    if not class_name.strip():
        raise SISOInputError(f"the class name is empty: give one, e.g. {setting('class_name', 'dog')}")
    prompts = [fill_template(template, class_name.strip()) for template in (templates or GENERIC_TEMPLATES)]
    return list(dict.fromkeys(prompt for prompt in prompts if prompt))
