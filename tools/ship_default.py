#!/usr/bin/env python3
"""Ship the trained tiny LLaVA as the page's default model (issue 6), reproducibly:

    python3 tools/ship_default.py --f32 .cache/tinyllava/f32 --bitnet .cache/tinyllava/bitnet [--cli PATH]

From the two training outputs of tools/train_tiny_llava.py it:
- converts `f32/hf` with `webvlm convert` to www/models/tiny-llava-int4 (INT4 g64 language model, INT8 tower)
  and `bitnet/hf` to www/models/tiny-llava-ternary (ternary BitLinear layers): what `npm start` serves;
- copies each variant's goldens (`hf/golden.json` + `golden-images/`) to tests/fixtures/tinyllava/<variant>/
  (tests/tiny_llava.rs checks the shipped shards against them) and its loss curve to docs/;
- writes sample scenes (held-out seeds the evaluation split does not use) to www/samples/ and lists them,
  with a question each, in www/models.json, where the INT4 model becomes the page's default.
Needs only Pillow and numpy (tools/vqa_gen.py) besides the CLI.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import vqa_gen  # noqa: E402

MODELS = {"f32": ("tiny-llava-int4", ["--weights", "int4"], "Tiny LLaVA, trained here on shapes (int4, images)"),
          "bitnet": ("tiny-llava-ternary", ["--weights", "ternary"],
                     "Tiny LLaVA BitNet b1.58, trained here on shapes (ternary, images)")}
SAMPLE_SEEDS = range(vqa_gen.HELDOUT_BASE + 5000, vqa_gen.HELDOUT_BASE + 5006)  # not in the eval split (80)
SAMPLE_KINDS = ["describe", "colour", "count", "position", "text", "shape"]


def convert(cli, src, name, flags):
    out = ROOT / "www" / "models" / name
    subprocess.check_call([str(cli), "convert", str(src / "hf"), "--out", str(out), "--force"] + flags)
    return out


def copy_goldens(src, variant):
    dst = ROOT / "tests" / "fixtures" / "tinyllava" / variant
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "golden-images").mkdir(parents=True)
    shutil.copy(src / "hf" / "golden.json", dst / "golden.json")
    for img in sorted((src / "hf" / "golden-images").iterdir()):
        shutil.copy(img, dst / "golden-images" / img.name)
    runs = chain(src)
    for i, run in enumerate(runs):  # the run and the ones it continued (--init), oldest first
        tag = "" if len(runs) == 1 else f"-part{i + 1}"
        for name in ["probe.csv", "train.json"]:
            if (run / name).exists():
                shutil.copy(run / name, ROOT / "docs" / f"tinyllava-{variant}{tag}-{name}")
    plot_chain(runs, ROOT / "docs" / f"tinyllava-{variant}-loss.png", variant)


def chain(run):
    """`run` and the runs it continued from (train.json's `init`), oldest first."""
    out = [run]
    while True:
        init = json.loads((out[0] / "train.json").read_text())["args"].get("init")
        if not init:
            return out
        out.insert(0, ROOT / init if not Path(init).is_absolute() else Path(init))


def plot_chain(runs, path, variant):
    """One loss curve over the chained runs (steps continued across them)."""
    from train_tiny_llava import plot_loss

    log, offset, wall = [], 0, 0.0
    for run in runs:
        rows = [line.split(",") for line in (run / "loss.csv").read_text().splitlines()[1:]]
        log += [(offset + int(s), wall + float(t), float(v)) for s, t, v in rows]
        offset, wall = log[-1][0] + 1, log[-1][1]
    title = f"tiny LLaVA {variant} ({len(runs)} run{'s' if len(runs) > 1 else ''}, {wall / 60:.0f} min)"
    plot_loss(log, path, title)


def samples():
    """One question of a different kind per sample scene; images written to www/samples/."""
    out = ROOT / "www" / "samples"
    out.mkdir(exist_ok=True)
    rows = []
    for seed, kind in zip(SAMPLE_SEEDS, SAMPLE_KINDS):
        scene = vqa_gen.sample_scene(seed)
        qa = [(q, a) for k, q, a in vqa_gen.questions(scene, random.Random(seed)) if k == kind] or \
             [(q, a) for k, q, a in vqa_gen.questions(scene, random.Random(seed)) if k == "describe"]
        vqa_gen.render(scene).save(out / f"scene-{seed}.png")
        rows.append({"image": f"samples/scene-{seed}.png", "question": qa[0][0], "answer": qa[0][1]})
    return rows


def write_models_json(shipped, sample_rows):
    path = ROOT / "www" / "models.json"
    cur = json.loads(path.read_text())
    urls = {f"models/{name}/" for name, _, _ in MODELS.values()}
    keep = [m for m in cur["models"] if m["url"] not in urls]
    ours = [{"name": title, "url": f"models/{name}/", "samples": sample_rows} for variant, (name, _, title)
            in MODELS.items() if variant in shipped]
    cur["models"] = ours + keep
    cur["default"] = ours[0]["url"]
    path.write_text(json.dumps(cur, indent=2) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--f32", type=Path, help="tools/train_tiny_llava.py --variant f32 output folder")
    ap.add_argument("--bitnet", type=Path, help="tools/train_tiny_llava.py --variant bitnet output folder")
    ap.add_argument("--cli", type=Path,
                    default=Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "webvlm")
    a = ap.parse_args()
    shipped = {}
    for variant, src in [("f32", a.f32), ("bitnet", a.bitnet)]:
        if src is None:
            continue
        name, flags, _ = MODELS[variant]
        shipped[variant] = convert(a.cli, src, name, flags)
        copy_goldens(src, variant)
    rows = samples()
    write_models_json(shipped, rows)
    for variant, out in shipped.items():
        size = sum(f.stat().st_size for f in out.iterdir())
        print(f"{variant}: {out.relative_to(ROOT)} {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
