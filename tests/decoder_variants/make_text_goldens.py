#!/usr/bin/env python3
"""Text-only goldens for the decoders of the committed LLaVA fixtures, from the fixtures' own
references: `tests/fixtures/bitnet/reference.py::decoder` (numpy BitNet b1.58 / OLMo) on
`bitnet/tiny`, and transformers' `LlavaForConditionalGeneration` (float32, a prompt without
image tokens, so only its Gemma decoder runs) on `llava/llava-gemma`. The text decoder is
checked alone. Needs numpy, torch and transformers (the fixtures venv):

    .cache/fixtures-venv/bin/python tests/decoder_variants/make_text_goldens.py

Writes tests/decoder_variants/text_goldens.json.
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/fixtures/bitnet"))
import reference  # noqa: E402

IDS = [23131, 27, 209, 1276, 310, 275, 253, 2460, 32, 21893]


def load_safetensors(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    head = json.loads(raw[8 : 8 + n])
    out = {}
    for k, m in head.items():
        if k == "__metadata__":
            continue
        a, b = m["data_offsets"]
        dt = {"F32": np.float32, "F16": np.float16}[m["dtype"]]
        out[k] = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype=dt).reshape(m["shape"]).astype(np.float32)
    return out


def gemma_text():
    import torch
    from transformers import LlavaForConditionalGeneration

    folder = ROOT / "tests/fixtures/llava/llava-gemma"
    case = json.loads((folder / "golden.json").read_text())["cases"][0]
    image_id = json.loads((folder / "config.json").read_text())["image_token_index"]
    ids = [i for i in case["input_ids"] if i != image_id]
    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
    top = np.argsort(-logits, kind="stable")[:10]
    return {"ids": ids, "top10_ids": top.tolist(), "top10_logits": logits[top].tolist()}


def main():
    folder = ROOT / "tests/fixtures/bitnet/tiny"
    cfg = json.loads((folder / "config.json").read_text())
    w = load_safetensors(folder / "model.safetensors")
    emb = w["model.transformer.wte.weight"][IDS]
    logits = reference.decoder(cfg, w, emb)[-1]
    top = np.argsort(-logits, kind="stable")[:10]
    gold = {"bitnet/tiny": {"ids": IDS, "top10_ids": top.tolist(), "top10_logits": logits[top].tolist()}}
    gold["llava/llava-gemma"] = gemma_text()
    out = Path(__file__).with_name("text_goldens.json")
    out.write_text(json.dumps(gold, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
