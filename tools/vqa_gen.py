#!/usr/bin/env python3
"""Seeded generator of small synthetic images with questions, answers and an answer checker.

Each scene: a plain or textured background, one to four shapes (circle, square, triangle, star,
diamond) in distinct slots (left, right, top, bottom, centre), each with a colour (ten) and a size
(small, large), and sometimes a short word rendered with Pillow's built-in bitmap font. Every
scene yields questions about colour, shape, size, count, position, text and "Describe the image.",
answered by short sentences built from the scene (the answer key).

Splits are disjoint by seed: `train` uses seeds from 0, `heldout` from HELDOUT_BASE, `calib` (the
scenes of the converter's built-in calibration set, `tools/calib_set.py`) from CALIB_BASE; training
never draws a seed at or above HELDOUT_BASE, and the held-out split stays below CALIB_BASE.

Usage (Pillow + numpy only):

    python3 tools/vqa_gen.py --split heldout --images 80 --out .cache/vqa/heldout
    # writes images/NNNNNN.png and questions.jsonl ({"image", "seed", "kind", "question", "answer"})
"""

import argparse
import json
import random
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = 72  # image side in pixels (the vision tower's image_size: no resize in the processor)
CELL = 24  # the slots are the centres of a 3x3 grid of CELL-pixel cells: with the tower's patch size equal to
# CELL, every object (radius <= 9.5) and word (21 px wide with its box) lies inside one patch
SS = 4  # supersampling factor for anti-aliased shapes
HELDOUT_BASE = 1_000_000
CALIB_BASE = 2_000_000
COLOURS = {
    "red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 225), "yellow": (245, 225, 30),
    "orange": (250, 140, 20), "purple": (140, 40, 180), "pink": (250, 130, 200), "white": (255, 255, 255),
    "black": (0, 0, 0), "cyan": (30, 215, 225),
}
SHAPES = ["circle", "square", "triangle", "star", "diamond"]
SIZES = {"small": 5.5, "large": 9.5}  # radius in pixels
SLOTS = {name: (CELL * gx + CELL // 2, CELL * gy + CELL // 2)
         for name, (gx, gy) in {"top": (1, 0), "left": (0, 1), "centre": (1, 1), "right": (2, 1), "bottom": (1, 2)}.items()}
SLOT_ORDER = ["top", "left", "centre", "right", "bottom"]
WHERE = {"top": "at the top", "bottom": "at the bottom", "left": "on the left", "right": "on the right",
         "centre": "in the centre"}
BACKGROUNDS = ["plain", "striped", "checkered", "dotted", "noisy"]
WORDS = ["CAT", "DOG", "SUN", "BOX", "HAT", "CAR", "MAP", "KEY", "FOX", "CUP", "BUS", "PEN"]
NUMBERS = ["no", "one", "two", "three", "four"]
PLURAL = {s: s + "es" if s.endswith("x") else s + "s" for s in SHAPES}


def sample_scene(seed):
    """The scene for `seed`: a dict of background, objects and optional text (deterministic)."""
    rng = random.Random(seed)
    bg = rng.choice(BACKGROUNDS)
    shade = rng.randint(105, 165)
    tint = [rng.randint(-15, 15) for _ in range(3)]
    text = rng.choice(WORDS) if rng.random() < 0.35 else None
    text_slot = rng.choice(["top", "bottom"]) if text else None
    free = [s for s in SLOT_ORDER if s != text_slot]
    n = rng.randint(1, 3 if text else 4)
    slots = sorted(rng.sample(free, n), key=SLOT_ORDER.index)
    objects = [{"shape": rng.choice(SHAPES), "colour": rng.choice(list(COLOURS)), "size": rng.choice(list(SIZES)),
                "slot": s, "angle": rng.uniform(-0.25, 0.25)} for s in slots]
    return {"seed": seed, "background": bg, "shade": shade, "tint": tint, "text": text, "text_slot": text_slot,
            "objects": objects}


def _background(scene):
    rng = np.random.default_rng(scene["seed"])
    base = np.array([scene["shade"] + t for t in scene["tint"]], np.float32)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    kind = scene["background"]
    if kind == "plain":
        delta = np.zeros((SIZE, SIZE), np.float32)
    elif kind == "striped":
        period = rng.integers(4, 9)
        delta = np.where(((x + y * rng.integers(0, 2)) // period) % 2 == 0, 22.0, -22.0)
    elif kind == "checkered":
        cell = rng.integers(4, 9)
        delta = np.where(((x // cell) + (y // cell)) % 2 == 0, 22.0, -22.0)
    elif kind == "dotted":
        step = rng.integers(5, 8)
        delta = np.where((x % step < 2) & (y % step < 2), 30.0, 0.0)
    else:
        delta = rng.normal(0, 14, (SIZE, SIZE))
    img = base[None, None, :] + delta[..., None]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _polygon(shape, cx, cy, r, angle):
    if shape == "square":
        pts = [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]
    elif shape == "triangle":
        pts = [(0, -1.0), (0.95, 0.75), (-0.95, 0.75)]
    elif shape == "diamond":
        pts = [(0, -1.05), (0.75, 0), (0, 1.05), (-0.75, 0)]
    else:  # star: 5 points, inner radius 0.45
        pts = [((1.0 if i % 2 == 0 else 0.45) * np.sin(i * np.pi / 5), -(1.0 if i % 2 == 0 else 0.45) * np.cos(i * np.pi / 5))
               for i in range(10)]
    c, s = np.cos(angle), np.sin(angle)
    return [(SS * (cx + r * (px * c - py * s)), SS * (cy + r * (px * s + py * c))) for px, py in pts]


def render(scene):
    """The RGB image (SIZE x SIZE) of `scene`."""
    bg = _background(scene).resize((SIZE * SS, SIZE * SS), Image.NEAREST)
    draw = ImageDraw.Draw(bg)
    for o in scene["objects"]:
        cx, cy = SLOTS[o["slot"]]
        r, fill = SIZES[o["size"]], COLOURS[o["colour"]]
        if o["shape"] == "circle":
            draw.ellipse([SS * (cx - r), SS * (cy - r), SS * (cx + r), SS * (cy + r)], fill=fill)
        else:
            draw.polygon(_polygon(o["shape"], cx, cy, r, o["angle"]), fill=fill)
    img = bg.resize((SIZE, SIZE), Image.LANCZOS)
    if scene["text"]:
        font = ImageFont.load_default_imagefont()
        draw = ImageDraw.Draw(img)
        x0, y0, x1, y1 = draw.textbbox((0, 0), scene["text"], font=font)
        cx, cy = SLOTS[scene["text_slot"]]
        pos = (cx - (x1 - x0) // 2 - x0, cy - (y1 - y0) // 2 - y0)
        ink = (0, 0, 0) if scene["shade"] >= 135 else (255, 255, 255)
        draw.rectangle([pos[0] + x0 - 2, pos[1] + y0 - 1, pos[0] + x1 + 1, pos[1] + y1],
                       fill=tuple(255 - v for v in ink))
        draw.text(pos, scene["text"], font=font, fill=ink)
    return img


def _count_sentence(n, noun_single, noun_plural):
    if n == 1:
        return f"There is one {noun_single}."
    return f"There are {NUMBERS[n]} {noun_plural}."


def describe(scene):
    """The "Describe the image." answer: objects in slot order, the background, then the text."""
    parts = [f"a {o['size']} {o['colour']} {o['shape']} {WHERE[o['slot']]}" for o in scene["objects"]]
    objs = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    sentence = f"{objs[0].upper()}{objs[1:]} on a {scene['background']} background."
    if scene["text"]:
        sentence += f" The text says {scene['text']}."
    return sentence


def _object_questions(scene, rng):
    objs = scene["objects"]
    out = []
    o = rng.choice(objs)
    by_shape = [p for p in objs if p["shape"] == o["shape"]]
    by_colour = [p for p in objs if p["colour"] == o["colour"]]
    if len(by_shape) == 1:
        out.append(("colour", f"What colour is the {o['shape']}?", f"The {o['shape']} is {o['colour']}."))
    if len(by_colour) == 1:
        out.append(("shape", f"What shape is the {o['colour']} object?", f"It is a {o['shape']}."))
    name = f"{o['colour']} {o['shape']}"
    if len([p for p in by_shape if p["colour"] == o["colour"]]) == 1:
        out.append(("position", f"Where is the {name}?", f"It is {WHERE[o['slot']]}."))
        out.append(("size", f"Is the {name} small or large?", f"It is {o['size']}."))
    slot = rng.choice(SLOT_ORDER)
    here = [p for p in objs if p["slot"] == slot]
    if scene["text_slot"] != slot:
        ans = f"A {here[0]['colour']} {here[0]['shape']}." if here else f"There is nothing {WHERE[slot]}."
        out.append(("position", f"What is {WHERE[slot]}?", ans))
    return out


def questions(scene, rng=None):
    """All question kinds for `scene` as (kind, question, answer) triples (some kinds need unique objects)."""
    rng = rng or random.Random(scene["seed"] + 7)
    objs = scene["objects"]
    out = _object_questions(scene, rng)
    out.append(("count", "How many shapes are there?", _count_sentence(len(objs), "shape", "shapes")))
    shape = rng.choice(SHAPES)
    k = sum(p["shape"] == shape for p in objs)
    out.append(("count", f"How many {PLURAL[shape]} are there?",
                f"There are no {PLURAL[shape]}." if k == 0 else _count_sentence(k, shape, PLURAL[shape])))
    if scene["text"]:
        out.append(("text", "What does the text say?", f"It says {scene['text']}."))
    else:
        out.append(("text", "Is there any text?", "No, there is no text."))
    out.append(("describe", "Describe the image.", describe(scene)))
    return out


def example(seed, per_image=None):
    """(image, scene, qa list) for `seed`; `per_image` picks that many questions (seeded), else all."""
    scene = sample_scene(seed)
    qa = questions(scene)
    if per_image is not None and per_image < len(qa):
        qa = random.Random(seed + 13).sample(qa, per_image)
    return render(scene), scene, qa


def split_seeds(split, n):
    base = {"train": 0, "heldout": HELDOUT_BASE, "calib": CALIB_BASE}[split]
    return range(base, base + n)


# ------------------------------------------------------------------------------------------------
# Answer checking

_SPELL = {"color": "colour", "center": "centre", "gray": "grey", "0": "no", "zero": "no", "none": "no", "1": "one",
          "2": "two", "3": "three", "4": "four", "an": "a"}
_CONTENT = set(COLOURS) | set(SHAPES) | set(PLURAL.values()) | set(SIZES) | set(SLOTS) | set(BACKGROUNDS) \
    | {w.lower() for w in WORDS} | set(NUMBERS) | {"yes", "nothing", "text"}


def normalize(sentence):
    """Lower case, British spellings, digits as words, punctuation and extra spaces removed."""
    words = re.sub(r"[^a-z0-9 ]+", " ", sentence.lower()).split()
    return " ".join(_SPELL.get(w, w) for w in words)


def content(sentence):
    """The attribute words of a sentence, in order (colours, shapes, sizes, slots, numbers, text words)."""
    return [w for w in normalize(sentence).split() if w in _CONTENT]


def judge(question, answer_key, model_answer):
    """True when `model_answer` says what `answer_key` says: equal after normalization, or the same
    attribute words in the same order (so "It is red." is right for "The circle is red." only when the
    question names the circle: the question's own attribute words may be left out)."""
    key, got = normalize(answer_key), normalize(model_answer)
    if key == got:
        return True
    if not got:
        return False
    asked = set(content(question))
    want = content(answer_key)
    have = content(model_answer)
    return have == want or (have == [w for w in want if w not in asked] and len(have) > 0)


def write_split(split, n_images, out, per_image=None):
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in split_seeds(split, n_images):
        img, _, qa = example(seed, per_image)
        name = f"images/{seed:07d}.png"
        img.save(out / name)
        rows += [{"image": name, "seed": seed, "kind": k, "question": q, "answer": a} for k, q, a in qa]
    with open(out / "questions.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", choices=["train", "heldout", "calib"], default="heldout")
    ap.add_argument("--images", type=int, default=80)
    ap.add_argument("--per-image", type=int, default=None, help="questions per image (default: all)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rows = write_split(a.split, a.images, a.out, a.per_image)
    kinds = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    print(f"{len(rows)} questions on {a.images} images in {a.out}: {kinds}")


if __name__ == "__main__":
    main()
