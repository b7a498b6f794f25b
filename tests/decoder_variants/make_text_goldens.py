#!/usr/bin/env python3
"""Text-only goldens for the decoders of the committed LLaVA fixtures, from the fixtures' own
references: `tests/fixtures/bitnet/reference.py::decoder` (numpy BitNet b1.58 / OLMo) on
`bitnet/tiny`. Input embeddings are rows of `wte` for fixed token ids (no image), so the text
decoder is checked alone. Needs numpy (e.g. the fixtures venv):

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


def main():
    folder = ROOT / "tests/fixtures/bitnet/tiny"
    cfg = json.loads((folder / "config.json").read_text())
    w = load_safetensors(folder / "model.safetensors")
    emb = w["model.transformer.wte.weight"][IDS]
    logits = reference.decoder(cfg, w, emb)[-1]
    top = np.argsort(-logits, kind="stable")[:10]
    gold = {"bitnet/tiny": {"ids": IDS, "top10_ids": top.tolist(), "top10_logits": logits[top].tolist()}}
    out = Path(__file__).with_name("text_goldens.json")
    out.write_text(json.dumps(gold, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
