"""prompts.py: templates, prompt files (ours and DreamBench's Python form) and the class guess."""

from __future__ import annotations

import pytest

from siso_lib.errors import SISOInputError
from siso_lib.evaluation.prompts import (
    GENERIC_TEMPLATES,
    evaluation_prompts,
    fill_template,
    guess_class_name,
    read_prompt_file,
)


@pytest.mark.parametrize(
    "template, expected",
    [
        ("a {class} on the beach", "a dog on the beach"),
        ("a {} in the snow", "a dog in the snow"),
        ("a {0} {1} in the jungle", "a dog in the jungle"),  # DreamBench: no identifier token in SISO
        ("a {0} {1} wearing a red hat", "a dog wearing a red hat"),
        ("a cat on the moon", "a cat on the moon"),
    ],
)
def test_templates_are_filled_with_the_class(template, expected):
    assert fill_template(template, "dog") == expected


@pytest.mark.parametrize(
    "prompt, expected",
    [("a photo of a cat", "cat"), ("A photo of an old teapot", "old teapot"), ("a picture of the red backpack.", "red backpack"),
     ("photo of my dog", "dog"), ("corgi", "corgi")],
)
def test_the_class_is_guessed_from_the_training_prompt(prompt, expected):
    assert guess_class_name(prompt) == expected


def test_a_prompt_file_in_plain_and_dreambench_python_form(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text(
        "# live subjects\n\n"
        "'a {0} {1} in the jungle'.format(unique_token, class_token),\n"
        '"a {0} {1} on top of pink fabric".format(unique_token, class_token),\n'
        "a {class} in Paris\n",
        encoding="utf-8",
    )
    templates = read_prompt_file(path)
    assert templates == ["a {0} {1} in the jungle", "a {0} {1} on top of pink fabric", "a {class} in Paris"]
    assert evaluation_prompts("dog", templates) == ["a dog in the jungle", "a dog on top of pink fabric", "a dog in Paris"]


def test_default_prompts_and_duplicates():
    assert evaluation_prompts("cat") == [fill_template(t, "cat") for t in GENERIC_TEMPLATES]
    assert evaluation_prompts("cat", ["a {class}", "a {}", "a cat"]) == ["a cat"]


@pytest.mark.parametrize(
    "content, message",
    [(b"# only a comment\n\n", "holds no prompt"), (b"\xff\xfe a \x80 prompt", "not UTF-8")],
)
def test_bad_prompt_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "prompts.txt"
    path.write_bytes(content)
    with pytest.raises(SISOInputError, match=message) as error:
        read_prompt_file(path)
    assert "\n" not in str(error.value)
    with pytest.raises(SISOInputError, match="does not exist"):
        read_prompt_file(tmp_path / "missing.txt")
    with pytest.raises(SISOInputError, match="class name is empty"):
        evaluation_prompts("  ")
