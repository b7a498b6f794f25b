#!/usr/bin/env python3
"""The quantization table of docs/QUANTIZATION.md, produced by one command: converts one f32 source
with each method through the native CLI (`webvlm convert`, `webvlm eval`) and prints the markdown
table (size of the shards, mean KL vs f32, top-1 agreement, perplexity, convert time).

Rows: RTN INT4 g64, AWQ, GPTQ, AWQ + GPTQ, ratio 0.6 (GPTQ, INT4/INT8 by sensitivity),
entropy-guided at the same ratio, and ternary RTN (converted without calibration, then measured by
`webvlm eval` on the same held-out set). The calibrated rows' numbers are their `quality.json`.
Standard library only; build the CLI first (`cargo build --release`).

    python3 tools/quant_table.py --src .cache/tinyllava/one-f32/hf --out .cache/quant-table/tinyllava
    python3 tools/quant_table.py --src .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --out .cache/quant-table/smollm2

Writes OUT/<row>/ (the converted model, `convert.log`) and OUT/table.json; prints the table, the
time, the load average before and after, and the CPU time and peak memory of each conversion.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# (key, row label, convert arguments before --calibrate; None: ternary RTN, evaluated by `webvlm eval`)
ROWS = [
    ("rtn", "RTN INT4 g64", ["--method", "rtn"]),
    ("awq", "AWQ", ["--method", "awq"]),
    ("gptq", "GPTQ", ["--method", "gptq"]),
    ("awq-gptq", "AWQ + GPTQ", ["--method", "awq+gptq"]),
    ("ratio", "ratio 0.6 (GPTQ, INT4/INT8)", ["--method", "gptq", "--ratio", "0.6"]),
    ("entropy", "entropy-guided (GPTQ, INT4/INT8 by entropy blocks)",
     ["--method", "gptq", "--ratio", "0.6", "--entropy-guided"]),
    ("ternary", "ternary (RTN, not trained ternary)", None),
]


def run(cmd, log):
    """Run `cmd` with stdout to a string and stderr to `log`; (stdout, wall s, CPU s, peak RSS MB)."""
    t0 = time.monotonic()
    with open(log, "w") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        out = p.stdout.read()
        p.stdout.close()
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(cmd)} failed ({code}); see {log}")
    return out, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def shard_mb(folder):
    return sum(p.stat().st_size for p in Path(folder).glob("model-*.safetensors")) / 1e6


def measure(a, key, args):
    """One row: convert (and for ternary, eval); its numbers."""
    out = Path(a.out) / key
    calib = ["--calibrate", a.calibrate, "--calib-tokens", str(a.calib_tokens), "--eval-tokens", str(a.eval_tokens)]
    conv = [a.webvlm, "convert", a.src, "--out", str(out), "--force"]
    conv += ["--weights", "ternary"] if args is None else args + calib
    out.mkdir(parents=True, exist_ok=True)
    _, wall, cpu, rss = run(conv, out / "convert.log")
    command = "--weights ternary`, then `webvlm eval" if args is None else " ".join(args + calib[:2])
    row = {"key": key, "command": command, "seconds": wall,
           "cpu_seconds": cpu, "peak_rss_mb": rss, "size_mb": shard_mb(out)}
    if args is None:
        ev = [a.webvlm, "eval", "--model", str(out), "--reference", a.src, "--text", a.calibrate,
              "--eval-tokens", str(a.eval_tokens)]
        text, *_ = run(ev, out / "eval.log")
        row["evaluation"] = json.loads(text)
        row["calibrated"] = False
    else:
        q = json.loads((out / "quality.json").read_text())
        row["evaluation"], row["calibrated"] = q["evaluation"], True
        row["calibration_tokens"], row["calibration_text"] = q["calibration_tokens"], q["calibration_text"]
        p4 = sum(x["params"] for x in q["layers"] if x["format"].startswith("int4"))
        row["int4_param_share"] = p4 / max(1, sum(x["params"] for x in q["layers"]))
    print(f"{key}: {row['evaluation']} in {wall:.0f} s", file=sys.stderr, flush=True)
    return row


def table(rows):
    ref = rows[0]["evaluation"]["perplexity_reference"]
    rtn_kl = next((r["evaluation"]["mean_kl"] for r in rows if r["key"] == "rtn"), None)
    head = ["row", "command", "size MB (shards)", "mean KL vs f32", "top-1 agreement", f"perplexity (f32: {ref:.2f})",
            "convert time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    labels = {k: label for k, label, _ in ROWS}
    for r in rows:
        e = r["evaluation"]
        kl = f"{e['mean_kl']:.4g}"
        if rtn_kl and r["key"] != "rtn" and r["calibrated"]:
            kl += f" ({(e['mean_kl'] / rtn_kl - 1) * 100:+.0f}%)".replace("-", "−")
        time_s = f"{r['seconds']:.0f} s" if r["calibrated"] else f"{r['seconds']:.0f} s (no calibration)"
        size = f"{r['size_mb']:.{2 if r['size_mb'] < 20 else 1}f}"
        cells = [labels[r["key"]], f"`{r['command']}`", size, kl, f"{e['top1_agreement'] * 100:.1f}%",
                 f"{e['perplexity']:.4g}", time_s]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", required=True, help="f32 source (HF folder, GGUF, converted f32 folder)")
    ap.add_argument("--calibrate", default="builtin", help="calibration spec (builtin, a text file, an image folder)")
    ap.add_argument("--out", required=True, help="work folder for the converted models")
    ap.add_argument("--webvlm", default="target/release/webvlm")
    ap.add_argument("--rows", default=",".join(k for k, _, _ in ROWS), help="comma-separated subset of the rows")
    ap.add_argument("--calib-tokens", type=int, default=2048)
    ap.add_argument("--eval-tokens", type=int, default=1024)
    a = ap.parse_args()
    if "CARGO_TARGET_DIR" in os.environ and a.webvlm == "target/release/webvlm":
        a.webvlm = str(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "webvlm")
    want = a.rows.split(",")
    unknown = set(want) - {k for k, _, _ in ROWS}
    if unknown:
        sys.exit(f"unknown rows {sorted(unknown)}")
    start, load0 = datetime.datetime.now(datetime.timezone.utc), os.getloadavg()
    rows = [measure(a, k, args) for k, _, args in ROWS if k in want]
    load1 = os.getloadavg()
    doc = {"src": a.src, "calibrate": a.calibrate, "started": start.isoformat(timespec="seconds"),
           "load_before": load0, "load_after": load1, "cpus": os.cpu_count(), "rows": rows}
    (Path(a.out) / "table.json").write_text(json.dumps(doc, indent=1))
    print(table(rows))
    print(f"\nsource {a.src}, --calibrate {a.calibrate}, {start:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
          f"load average {load0[0]:.1f} before / {load1[0]:.1f} after")
    for r in rows:
        print(f"- {r['key']}: wall {r['seconds']:.0f} s, CPU {r['cpu_seconds']:.0f} s, peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"{r['evaluation']['positions']} positions"
              + (f", block linears {r['int4_param_share'] * 100:.1f}% INT4 by parameters" if r["calibrated"] else ""))


if __name__ == "__main__":
    main()
