#!/usr/bin/env python3
"""Held-out accuracy of a model through the native CLI (`webvlm generate --image ... --json`), judged by
tools/vqa_gen.py's answer key.

    python3 tools/eval_heldout.py --model .cache/tinyllava/f32/int4 [--cli PATH] [--limit N] [--out FILE]

The held-out split (seeds from vqa_gen.HELDOUT_BASE, never trained on; 80 images, 3 questions each: 240
questions) is the committed tests/fixtures/tinyllava/heldout/ (tests/tiny_llava.rs asks it too);
`--write` regenerates it from the generator (tools/tests/test_vqa_gen.py checks it is up to date). Each question is asked alone with
greedy decoding, as the LLaVA-1.5 template renders it (`USER: <image>\\n{question} ASSISTANT:`).
Prints per-kind and overall accuracy and writes every answer to --out (JSON).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import vqa_gen  # noqa: E402

SPLIT = ROOT / "tests" / "fixtures" / "tinyllava" / "heldout"
SPLIT_IMAGES, SPLIT_PER_IMAGE = 80, 3


def ask(cli, model, image, question, backend, threads):
    prompt = f"USER: <image>\n{question} ASSISTANT:"
    cmd = [str(cli), "generate", "--model", str(model), "--image", str(image), "--prompt", prompt, "--json",
           "--max-new-tokens", "64", "--backend", backend, "--threads", str(threads)]
    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description="Held-out VQA accuracy through the native CLI.")
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--cli", type=Path,
                    default=Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "webvlm")
    ap.add_argument("--limit", type=int, default=0, help="first N questions only (0: all)")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--write", action="store_true", help="regenerate the committed held-out split first")
    a = ap.parse_args()
    if a.write or not (SPLIT / "questions.jsonl").exists():
        vqa_gen.write_split("heldout", SPLIT_IMAGES, SPLIT, per_image=SPLIT_PER_IMAGE)
    rows = [json.loads(line) for line in open(SPLIT / "questions.jsonl")]
    rows = rows[: a.limit] if a.limit else rows
    per_kind, results, t0 = {}, [], time.time()
    for r in rows:
        res = ask(a.cli, a.model, SPLIT / r["image"], r["question"], a.backend, a.threads)
        ok = vqa_gen.judge(r["question"], r["answer"], res["text"])
        k = per_kind.setdefault(r["kind"], [0, 0])
        k[0] += ok
        k[1] += 1
        results.append(dict(r, model=res["text"].strip(), correct=ok))
    right = sum(x["correct"] for x in results)
    summary = {"model": str(a.model), "questions": len(results), "correct": right,
               "accuracy": round(right / max(1, len(results)), 4),
               "per_kind": {k: {"correct": c, "total": n, "accuracy": round(c / n, 4)} for k, (c, n) in per_kind.items()},
               "seconds": round(time.time() - t0, 1)}
    print(json.dumps(summary, indent=1))
    if a.out:
        a.out.write_text(json.dumps({"summary": summary, "answers": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
