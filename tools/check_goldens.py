#!/usr/bin/env python3
"""Compare a trained export's golden.json (transformers / reference.py greedy ids) with the native CLI.

    python3 tools/check_goldens.py .cache/tinyllava/f32/hf [--model CONVERTED] [--cli PATH]

For each recorded case: the native greedy ids (stopping at eos) from --model (default: the HF folder
itself) against `greedy_ids_stop_at_eos` (bitnet goldens: `greedy_ids` cut after the first eos), and the
first-step top-1 id. Exit status 1 when an f32 run differs.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hf", type=Path)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--cli", type=Path,
                    default=Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "webvlm")
    a = ap.parse_args()
    g = json.loads((a.hf / "golden.json").read_text())
    eos = g["eos_token_id"]
    bad = 0
    for c in g["cases"]:
        want = c.get("greedy_ids_stop_at_eos") or c["greedy_ids"]
        want = want[: want.index(eos) + 1] if eos in want else want
        cmd = [str(a.cli), "generate", "--model", str(a.model or a.hf), "--image", str(a.hf / c["image"]),
               "--prompt", c["chat_text"], "--json", "--max-new-tokens", str(len(want)), "--backend", "cpu"]
        out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True,
                                        env=dict(os.environ, XDG_RUNTIME_DIR="/tmp")).stdout.strip().splitlines()[-1])
        got = out["generated_ids"]
        same = got == want
        bad += not same
        print(f"{c['name']}: {'equal' if same else 'DIFFERENT'} ({len(want)} ids; first {got[:1]} vs {want[:1]}, "
              f"golden first-step margin {c['first_step_margin']})")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
