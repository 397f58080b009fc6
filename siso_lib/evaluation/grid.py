"""The evaluation's picture: the subject photo, then per prompt its images with their scores.

    [subject photo]  summary: LoRA and base means
    prompt 0 (seed diversity LoRA / base)
    [base seed 0] [base seed 1] ...  |  [LoRA seed 0] [LoRA seed 1] ...   (as notebook 02: base left;
                                                                           klein's reference-mode baseline between)
     DINO .48 IR .53                      (two lines of scores under each picture)
     CLIP-I .70 CLIP-T .31
    prompt 1 ...

Pictures are shown at least `MIN_CELL` px wide (tiny test models render 64 px) so the scores fit.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from ..text import count

MIN_CELL = 176
GAP = 16
TEXT_LINE = 16
LABELS = (("dino", "DINO"), ("ir", "IR"), ("clip_i", "CLIP-I"), ("clip_t", "CLIP-T"))
# the two diversities under names that cannot be mixed up (evaluate.py says why)
SUMMARY_LABELS = (*LABELS, ("seed_diversity", "seed-div"), ("paper_diversity_mse", "paper-div(MSE)"))


def _score(value) -> str:
    return "-" if value is None else f"{value:.2f}".replace("0.", ".", 1) if value >= 0 else f"{value:.2f}".replace("-0.", "-.", 1)


def _caption(scores: dict) -> list[str]:
    parts = [f"{label} {_score(scores[name])}" for name, label in LABELS if name in scores]
    return [" ".join(parts[:2]), " ".join(parts[2:])]


def _fit(image: Image.Image, size: int) -> Image.Image:
    """The image scaled to fit a size x size square (aspect kept), on white."""
    image = image.convert("RGB")
    scale = size / max(image.size)
    resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BICUBIC)
    square = Image.new("RGB", (size, size), "white")
    square.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
    return square


def score_grid(record: dict, images: dict, subject: Image.Image) -> Image.Image:
    """metrics.json's `record` and the rendered `images` {(prompt, seed, variant): PIL} as one picture."""
    font = ImageFont.load_default(size=12)
    seeds, prompts = record["seeds"], record["prompts"]
    variants = [v for v in ("base", "reference", "lora") if any(key[2] == v for key in images)]
    cell = max(MIN_CELL, record["render"]["resolution"])
    row_height = TEXT_LINE + cell + 2 * TEXT_LINE + GAP // 2
    width = max(len(seeds) * cell * len(variants) + GAP * (len(variants) - 1), 3 * cell)
    header = cell + GAP
    canvas = Image.new("RGB", (width, header + row_height * len(prompts)), "white")
    draw = ImageDraw.Draw(canvas)

    canvas.paste(_fit(subject, cell), (0, 0))
    lines = [f"subject photo; class {record['class_name']!r}; {count(len(prompts), 'prompt')} x {count(len(seeds), 'seed')}"]
    for variant in variants:
        means = record["summary"][variant]
        lines.append(f"{variant}: " + "  ".join(f"{label} {_score(means.get(name))}" for name, label in SUMMARY_LABELS if name in means))
    for n, line in enumerate(lines):
        draw.text((cell + GAP, 8 + n * TEXT_LINE), line, fill="black", font=font)
    for v, variant in enumerate(variants):  # a label above each half
        title = {"base": "WITHOUT the LoRA (base model)", "reference": "klein REFERENCE MODE (photo, no LoRA)"}.get(variant, "WITH the LoRA")
        draw.text((v * (len(seeds) * cell + GAP), header - TEXT_LINE), title, fill="black", font=ImageFont.load_default(size=13))

    scores = {(row["prompt_index"], row["seed"], row["variant"]): row for row in record["images"]}
    for i, prompt in enumerate(prompts):
        top = header + i * row_height
        diversity = "  ".join(f"{v} seed diversity {_score(record['per_prompt'][i][v].get('seed_diversity'))}" for v in variants)
        draw.text((0, top), f"{i}: {prompt}    {diversity}", fill="black", font=font)
        for v, variant in enumerate(variants):
            for j, seed in enumerate(seeds):
                left = v * (len(seeds) * cell + GAP) + j * cell
                canvas.paste(_fit(images[(i, seed, variant)], cell), (left, top + TEXT_LINE))
                for k, line in enumerate(_caption(scores[(i, seed, variant)])):
                    draw.text((left + 4, top + TEXT_LINE + cell + k * TEXT_LINE), line, fill="black", font=font)
    return canvas
