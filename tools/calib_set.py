#!/usr/bin/env python3
"""Writes the converter's built-in LLaVA calibration set (`webvlm convert --calibrate builtin` on a
LLaVA checkpoint): real photos from scikit-image's wheel and generated scenes of the default model's
generator (`tools/vqa_gen.py`, its `calib` split: seeds from CALIB_BASE = 2 000 000, disjoint from
training and held-out), each image with a prompt file (question, blank line, answer), in the layout
of `--calibrate DIR` (`src/calib/images.rs`): file-name order, the first 75% calibrate, the rest is
held out. Names carry an index so that both parts hold photos and scenes.

Reproducible (Pillow + numpy, as vqa_gen.py; the wheel from `pip download --no-deps
scikit-image==0.26.0`, which `tests/fixtures/make_fixtures.py` also fetches):

    .cache/fixtures-venv/bin/python tools/calib_set.py \\
        --skimage-wheel .cache/fixtures-data/scikit_image-0.26.0-*.whl --out data/calib-vlm
"""

import argparse
import io
import random
import shutil
import zipfile
from pathlib import Path

from PIL import Image

import vqa_gen as g

# file in the wheel's skimage/data/, question, answer (licences: skimage/data/_fetchers.py's docstrings)
PHOTOS = {
    "astronaut": ("astronaut.png", "Describe the image.",
                  "An astronaut in an orange spacesuit smiles in front of a flag and a model of the space shuttle.",
                  "public domain (NASA)"),
    "camera": ("camera.png", "What is the man doing?",
               "He is looking through a camera on a tripod in a grassy field.", "CC0 (Lav Varshney)"),
    "chelsea": ("chelsea.png", "What animal is this?", "A cat with orange and black striped fur.",
                "CC0 (Stefan van der Walt)"),
    "rocket": ("rocket.jpg", "What is happening in this photo?", "A rocket is lifting off from its launch pad.",
               "public domain (SpaceX)"),
    "hubble": ("hubble_deep_field.jpg", "What does this picture show?",
               "Many distant galaxies of different colours in the dark sky.", "public domain (NASA)"),
    "coffee": ("coffee.png", "Describe the image.",
               "A cup of coffee on a red saucer with a spoon, on a wooden table.", "CC0 (Rachel Michetti)"),
}
HELDOUT_PHOTO = "coffee"
SCENES = 34
HELDOUT_SCENES = 9  # the other 25 calibrate
PHOTO_SIDE = 160  # photos are scaled so their short side is this many pixels (JPEG quality 90)
KINDS = ["describe", "colour", "shape", "position", "size", "count", "text"]
CALIB_SHARE = 0.75  # src/calib/data.rs CALIB_SHARE


def scene_item(j):
    """(label, image, question, answer) of the j-th calib scene; question kinds cycle through KINDS."""
    seed = g.CALIB_BASE + j
    scene = g.sample_scene(seed)
    qa = g.questions(scene)
    want = [x for x in qa if x[0] == KINDS[j % len(KINDS)]] or qa
    _, q, a = random.Random(seed + 17).choice(want)
    return f"scene-{seed}", g.render(scene), q, a


def photo_item(wheel, name):
    """(label, image, question, answer) of photo `name`, read from scikit-image's wheel and scaled down."""
    file, q, a, _ = PHOTOS[name]
    img = Image.open(io.BytesIO(wheel.read(f"skimage/data/{file}"))).convert("RGB")
    k = PHOTO_SIDE / min(img.size)
    img = img.resize((round(img.width * k), round(img.height * k)), Image.LANCZOS)
    return f"photo-{name}", img, q, a


def layout(wheel):
    """Calibration items (photos interleaved with scenes), then held-out items."""
    scenes = [scene_item(j) for j in range(SCENES)]
    photos = [photo_item(wheel, n) for n in PHOTOS if n != HELDOUT_PHOTO]
    n_cal_scenes = SCENES - HELDOUT_SCENES
    calib, it = [], iter(scenes[:n_cal_scenes])
    for i in range(n_cal_scenes + len(photos)):
        calib.append(photos[i // 6] if i % 6 == 0 and i // 6 < len(photos) else next(it))
    held = [photo_item(wheel, HELDOUT_PHOTO)] + scenes[n_cal_scenes:]
    n = len(calib) + len(held)
    assert min(max(int(n * CALIB_SHARE + 0.5), 1), n - 1) == len(calib), "the 75% cut must fall between the parts"
    return calib, held


README = """# Built-in LLaVA calibration set

`webvlm convert --calibrate builtin` on a LLaVA checkpoint calibrates on these images with their prompts
(`NN-name.png|jpg` + `NN-name.txt`: question, blank line, answer), plus CPython's pydoc_data prose for a
quarter of the token budget (`docs/QUANTIZATION.md`). File-name order: the first {cal} items calibrate,
the last {held} are held out for `quality.json` / `webvlm eval --text builtin`.

Written by `tools/calib_set.py` (do not edit by hand):
- scenes: `tools/vqa_gen.py`'s `calib` split (seeds {base}..{last}; training uses seeds from 0, the
  held-out split from 1 000 000), 72x72 PNG, one question per scene, kinds in turn;
- photos from the PyPI wheel `scikit-image==0.26.0` (`skimage/data/`), scaled to a short side of
  {side} px, JPEG quality 90, with hand-written questions and answers:
{photos}
"""


def write(out, wheel_path):
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with zipfile.ZipFile(wheel_path) as wheel:
        calib, held = layout(wheel)
    items = calib + held
    for i, (label, img, q, a) in enumerate(items):
        stem = f"{i:02d}-{label}"
        if label.startswith("photo-"):
            img.save(out / f"{stem}.jpg", quality=90)
        else:
            img.save(out / f"{stem}.png")
        (out / f"{stem}.txt").write_text(f"{q}\n\n{a}\n")
    photos = "\n".join(f"  - `{f}`: {lic}" for f, _, _, lic in PHOTOS.values())
    (out / "README.md").write_text(README.format(cal=len(calib), held=len(held), base=g.CALIB_BASE,
                                                 last=g.CALIB_BASE + SCENES - 1, side=PHOTO_SIDE, photos=photos))
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"{len(items)} items ({len(PHOTOS)} photos, {SCENES} scenes) in {out}: {size / 1024:.0f} KiB")
    return items


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skimage-wheel", required=True, help="scikit-image 0.26.0 wheel (pip download --no-deps)")
    ap.add_argument("--out", default="data/calib-vlm")
    a = ap.parse_args()
    write(a.out, a.skimage_wheel)


if __name__ == "__main__":
    main()
