#!/usr/bin/env python3
"""Train a tiny LLaVA-1.5-shaped model on tools/vqa_gen.py scenes, export it, write its goldens.

    python3 tools/train_tiny_llava.py --variant f32 --steps 3000 --out .cache/tinyllava/f32
    python3 tools/train_tiny_llava.py --variant bitnet --steps 3000 --out .cache/tinyllava/bitnet

Runs in .cache/fixtures-venv (created as tests/fixtures/make_fixtures.py creates it). Writes to --out:
`hf/` (the exported checkpoint: transformers' LlavaForConditionalGeneration for f32, the LLaVaOLMoBitnet1B
layout for bitnet), `hf/golden.json` (3 held-out cases: input ids, top-10 first-step logits, 12 greedy
ids from transformers / tests/fixtures/bitnet/reference.py on the exported files), `loss.csv`,
`loss.png` (drawn with Pillow) and `train.json` (arguments, steps/s, wall time, final loss).
The tokenizer is SmolLM2's (49152 tokens) as `webvlm convert` extracts it from
.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf, plus `<image>` (f32 variant).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".cache" / "fixtures-venv"
sys.path.insert(0, str(ROOT / "tools"))
TOKENIZER = ROOT / ".cache" / "models" / "smollm2-135m-int4" / "tokenizer.json"
GGUF = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}"
    "{% endif %}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def prompt_text(question):
    """The LLaVA-1.5 chat template's output for one user turn with one image (see TEMPLATE)."""
    return f"USER: <image>\n{question} ASSISTANT:"


def ensure_venv():
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    py = VENV / "bin" / "python"
    if not py.exists():  # the fixtures' pinned stack (tests/fixtures/make_fixtures.py PINNED)
        sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
        from make_fixtures import PINNED

        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        subprocess.check_call([str(py), "-m", "pip", "install", "-q"] + PINNED)
    os.execv(str(py), [str(py), __file__] + sys.argv[1:])


def tokenizer_json():
    if not TOKENIZER.exists():
        cli = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "webvlm"
        subprocess.check_call([str(cli), "convert", str(GGUF), "--out", str(TOKENIZER.parent)])
    return TOKENIZER.read_text(encoding="utf-8")


def load_tokenizer(with_image):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER), eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if with_image:
        tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return tok


class Data:
    """A pool of training scenes (seeds 0..n, never held-out ones) with all their questions, tokenized."""

    def __init__(self, args, tok, variant, n_img):
        import numpy as np
        import vqa_gen

        assert args.pool_images <= vqa_gen.HELDOUT_BASE
        self.tok, self.variant, self.n_img = tok, variant, n_img
        self.image_id = tok.convert_tokens_to_ids("<image>") if variant == "f32" else None
        t0 = time.time()
        pix, self.items, self._prompts, labels = [], [], {}, []
        for i, seed in enumerate(vqa_gen.split_seeds("train", args.pool_images)):
            img, scene, qa = vqa_gen.example(seed)
            pix.append(np.asarray(img))
            labels.append(scene_labels(scene))
            for _, q, a in qa:
                self.items.append((i, self.prompt_ids(q), tok(" " + a)["input_ids"] + [tok.eos_token_id]))
        self.pixels = np.stack(pix)  # [n, SIZE, SIZE, 3] uint8
        self.slot_labels = np.stack([s for s, _ in labels])  # [n, slots, 4]
        self.bg_labels = np.array([b for _, b in labels])  # [n]
        used = {t for _, p, a in self.items for t in p + a if t >= 0} | {tok.pad_token_id, tok.eos_token_id}
        self.used = sorted(used)  # training runs on these tokens only (compact ids: their order here)
        self.compact = np.full(len(tok), -100, np.int64)
        self.compact[self.used] = np.arange(len(self.used))
        print(f"vocabulary: {len(self.used)} of {len(tok)} tokens used; the others' rows are zero", flush=True)
        print(f"data: {len(pix)} images, {len(self.items)} questions in {time.time() - t0:.1f}s", flush=True)

    def prompt_ids(self, question):
        if question not in self._prompts:
            head, tail = prompt_text(question).split("<image>")
            if self.variant == "f32":
                img = [self.image_id] * self.n_img  # as LlavaProcessor expands it
            else:
                from tiny_llava import IMAGE_TOKEN_INDEX

                img = [IMAGE_TOKEN_INDEX]  # tokenizer_image_token's placeholder
            self._prompts[question] = self.tok(head)["input_ids"] + img + self.tok(tail)["input_ids"]
        return self._prompts[question]

    def to_compact(self, ids):
        return [int(self.compact[t]) if t >= 0 else t for t in ids]

    def batch(self, rng, size):
        import torch

        picks = [self.items[j] for j in rng.integers(0, len(self.items), size)]
        batch, target = self.collate(picks, self.pixels)
        rows = [i for i, _, _ in picks]
        batch["slot_labels"] = torch.from_numpy(self.slot_labels[rows])
        batch["bg_labels"] = torch.from_numpy(self.bg_labels[rows])
        return batch, target

    def probe_set(self, n_images=32):
        """Held-out questions (3 per image, never trained on) for the teacher-forced probe: (batch, target, kinds)."""
        import numpy as np
        import vqa_gen

        picks, pix, kinds = [], [], []
        for i, seed in enumerate(vqa_gen.split_seeds("heldout", n_images)):
            img, _, qa = vqa_gen.example(seed, per_image=3)
            pix.append(np.asarray(img))
            for kind, q, a in qa:
                ids = self.prompt_ids(q) + self.tok(" " + a)["input_ids"] + [self.tok.eos_token_id]
                if all(t < 0 or self.compact[t] >= 0 for t in ids):  # only words the training data has
                    picks.append((i, self.prompt_ids(q), ids[len(self.prompt_ids(q)):]))
                    kinds.append(kind)
        batch, target = self.collate(picks, np.stack(pix))
        return batch, target, kinds

    def collate(self, picks, pixels):
        import numpy as np
        import torch

        size = len(picks)
        seqs = [p + a for _, p, a in picks]
        t = max(len(s) for s in seqs)
        ids = torch.full((size, t), int(self.compact[self.tok.pad_token_id]), dtype=torch.long)
        att = torch.zeros((size, t), dtype=torch.long)
        target = torch.full((size, t), -100, dtype=torch.long)  # target[i, j]: the id predicted at j
        for i, (_, p, a) in enumerate(picks):
            s = p + a
            ids[i, : len(s)] = torch.tensor(self.to_compact(s))
            att[i, : len(s)] = 1
            target[i, len(p) - 1: len(s) - 1] = torch.tensor(self.to_compact(a))
        px = pixels[[i for i, _, _ in picks]].astype(np.float32) / 255.0
        px = (px - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
        pv = torch.from_numpy(px).permute(0, 3, 1, 2).contiguous()  # [b, 3, SIZE, SIZE]
        return {"input_ids": ids, "attention_mask": att, "pixel_values": pv}, target


def scene_labels(scene):
    """The SlotProbe's targets for a scene: per slot (vqa_gen.SLOT_ORDER) [kind, colour, size, word] with kind
    0 empty, 1 text, 2.. a shape (-100 where a head has no answer), and the background's index."""
    import numpy as np
    import vqa_gen

    out = np.full((len(vqa_gen.SLOT_ORDER), 4), -100, np.int64)
    out[:, 0] = 0
    for o in scene["objects"]:
        s = vqa_gen.SLOT_ORDER.index(o["slot"])
        out[s] = [2 + vqa_gen.SHAPES.index(o["shape"]), list(vqa_gen.COLOURS).index(o["colour"]),
                  list(vqa_gen.SIZES).index(o["size"]), -100]
    if scene["text"]:
        out[vqa_gen.SLOT_ORDER.index(scene["text_slot"])] = [1, -100, -100, vqa_gen.WORDS.index(scene["text"])]
    return out, vqa_gen.BACKGROUNDS.index(scene["background"])


def make_slot_probe(args, net):
    """The auxiliary SlotProbe on the tower of `net` (f32: inside the HF model; bitnet: `vision_tower`)."""
    import vqa_gen
    from tiny_llava import SlotProbe, slot_weights

    tower = net.model.model.vision_tower if args.variant == "f32" else net.vision_tower
    w = slot_weights(args.image_size, args.patch, [vqa_gen.SLOTS[s] for s in vqa_gen.SLOT_ORDER])
    return SlotProbe(tower, -2, w, args.vis_hidden, 2 + len(vqa_gen.SHAPES), len(vqa_gen.COLOURS),
                     len(vqa_gen.SIZES), len(vqa_gen.WORDS), len(vqa_gen.BACKGROUNDS))


def loss_fn(net, batch, target, n_img, variant, log_rest):
    """Cross-entropy over the full vocabulary, computed on the compact one: every token the data never uses
    has a zero embedding row in the exported model (logit 0), so together they add log(n_unused) to the
    log-partition."""
    import torch
    import torch.nn.functional as F

    h = net.hidden(batch)  # [b, t', d]
    if variant == "bitnet":  # the placeholder became n_img features: shift targets after it
        from tiny_llava import IMAGE_TOKEN_INDEX

        pos = int((batch["input_ids"][0] == IMAGE_TOKEN_INDEX).int().argmax())
        pad = torch.full((target.shape[0], n_img - 1), -100, dtype=target.dtype)
        target = torch.cat([target[:, :pos], pad, target[:, pos:]], 1)
    sel = target >= 0
    logits = h[sel] @ net.embedding().weight.T  # [n, n_used]
    logits = torch.cat([logits, log_rest.expand(logits.shape[0], 1)], 1)
    return F.cross_entropy(logits, target[sel])


def probe(net, probe_set, n_img, variant):
    """Teacher-forced held-out accuracy: a question counts when every answer token is the argmax. Per kind."""
    import torch

    batch, target, kinds = probe_set
    with torch.no_grad():
        h = net.hidden(batch)
    if variant == "bitnet":
        from tiny_llava import IMAGE_TOKEN_INDEX

        pos = int((batch["input_ids"][0] == IMAGE_TOKEN_INDEX).int().argmax())
        pad = torch.full((target.shape[0], n_img - 1), -100, dtype=target.dtype)
        target = torch.cat([target[:, :pos], pad, target[:, pos:]], 1)
    pred = (h @ net.embedding().weight.T).argmax(-1)  # [b, t']; unused tokens (logit 0) never win a trained answer
    ok = ((pred == target) | (target < 0)).all(1).tolist()
    per = {}
    for k, good in zip(kinds, ok):
        per.setdefault(k, []).append(good)
    return sum(ok) / len(ok), {k: round(sum(v) / len(v), 3) for k, v in sorted(per.items())}


def expand_vocab(compact, full, used):
    """Copy `compact` (trained on the used tokens only) into `full`: vocabulary rows scattered, others zero."""
    import torch

    want = full.state_dict()
    sd = {}
    for k, v in compact.state_dict().items():
        if want[k].shape != v.shape:  # a vocabulary-sized tensor
            big = torch.zeros(want[k].shape, dtype=v.dtype)
            big[used] = v
            v = big
        sd[k] = v
    full.load_state_dict(sd)
    return full


def load_init(args, net, used):
    """Start from an earlier run's exported checkpoint (`--init DIR`: its `hf/` folder): every tensor copied,
    vocabulary-sized ones cut to the compact rows `used`. The optimizer state and the aux head start fresh."""
    import torch
    from safetensors.torch import load_file

    hf = args.init / "hf"
    if args.variant == "f32":  # transformers maps its saved names back
        from transformers import LlavaForConditionalGeneration

        target = net.model
        saved = LlavaForConditionalGeneration.from_pretrained(hf, dtype=torch.float32).state_dict()
    else:  # the LLaVaOLMoBitnet1B names of tiny_llava.export_bitnet
        target = net

        def rename(k):
            return k.replace("model.transformer.", "").replace("model.vision_tower.vision_tower.", "vision_tower.") \
                .replace("model.mm_projector.", "mm_projector.")
        saved = {rename(k): v for k, v in load_file(hf / "model.safetensors").items()}
    want = target.state_dict()
    sd = {}
    for k, v in want.items():
        src = saved.get(k)
        if src is None:
            raise SystemExit(f"--init {hf}: {k} is missing")
        sd[k] = src[used] if src.shape != v.shape else src
    target.load_state_dict(sd)
    print(f"initialized from {hf} ({len(sd)} tensors)", flush=True)


def train(args, net, data, n_img, out, aux=None):
    import math

    import numpy as np
    import torch
    from tiny_llava import cosine_lr

    named = list(net.named_parameters()) + (list(aux.named_parameters()) if aux is not None else [])
    decay = [p for n, p in named if p.dim() >= 2 and "embed" not in n and "wte" not in n]
    other = [p for n, p in named if not (p.dim() >= 2 and "embed" not in n and "wte" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98))
    rng = np.random.default_rng(args.seed)
    log_rest = torch.tensor(math.log(len(data.tok) - len(data.used)))
    probe_set, probes = data.probe_set(), []
    log, t0 = [], time.time()
    net.train()
    for step in range(args.steps):
        # Progress through the schedule: by steps, or by wall time when --max-minutes is set and the machine is
        # slower than --steps assumed (the cosine then still ends at zero when the time is up).
        done = step / args.steps
        if args.max_minutes:
            done = max(done, (time.time() - t0) / (60 * args.max_minutes))
        if done >= 1:
            print(f"stopping at step {step}: the schedule is done ({args.max_minutes} min)", flush=True)
            break
        for g in opt.param_groups:
            g["lr"] = cosine_lr(int(done * args.steps), args.steps, args.lr, args.warmup)
        batch, target = data.batch(rng, args.batch)
        loss = loss_fn(net, batch, target, n_img, args.variant, log_rest)
        total = loss
        if aux is not None and args.aux_weight > 0:
            aux_loss = aux.loss(batch["slot_labels"], batch["bg_labels"])
            total = loss + args.aux_weight * aux_loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in named], 1.0)
        opt.step()
        log.append((step, time.time() - t0, loss.item()))
        if args.probe_every and (step % args.probe_every == 0 or step == args.steps - 1):
            net.eval()
            acc, per = probe(net, probe_set, n_img, args.variant)
            net.train()
            probes.append((step, acc, per))
            print(f"probe step {step}: held-out teacher-forced {acc:.3f} {per}", flush=True)
        if step % args.log_every == 0 or step == args.steps - 1:
            el = time.time() - t0
            extra = f" aux {aux_loss.item():.4f}" if aux is not None and args.aux_weight > 0 else ""
            print(f"step {step} loss {loss.item():.4f}{extra} {(step + 1) / el:.3f} steps/s {el:.0f}s", flush=True)
    net.eval()
    if args.probe_every and log and (not probes or probes[-1][0] != log[-1][0]):
        acc, per = probe(net, probe_set, n_img, args.variant)
        probes.append((log[-1][0], acc, per))
        print(f"probe step {log[-1][0]} (last): held-out teacher-forced {acc:.3f} {per}", flush=True)
    with open(out / "probe.csv", "w") as f:
        kinds = sorted(probes[0][2]) if probes else []
        f.write(",".join(["step", "heldout_teacher_forced"] + kinds) + "\n")
        f.writelines(",".join([str(s), f"{a:.4f}"] + [str(p.get(k, "")) for k in kinds]) + "\n" for s, a, p in probes)
    with open(out / "loss.csv", "w") as f:
        f.write("step,seconds,loss\n")
        f.writelines(f"{s},{t:.2f},{v:.5f}\n" for s, t, v in log)
    return log


def plot_loss(log, path, title):
    """Loss per step (light) and its 50-step moving average (dark), log-scaled y, drawn with Pillow."""
    import math

    from PIL import Image, ImageDraw

    w, h, m = 800, 480, 60
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    steps = [s for s, _, _ in log]
    vals = [math.log10(max(v, 1e-4)) for _, _, v in log]
    lo, hi = math.floor(min(vals) * 2) / 2, math.ceil(max(vals) * 2) / 2
    hi = hi if hi > lo else lo + 0.5

    def xy(s, v):
        return (m + (w - 2 * m) * s / max(1, steps[-1]), h - m - (h - 2 * m) * (v - lo) / (hi - lo))

    d.rectangle([m, m, w - m, h - m], outline="black")
    k = lo
    while k <= hi + 1e-9:
        y = xy(0, k)[1]
        d.line([m - 5, y, w - m, y], fill=(220, 220, 220))
        d.text((5, y - 6), f"{10 ** k:.3g}", fill="black")
        k += 0.5
    for frac in (0, 0.25, 0.5, 0.75, 1):
        x = m + (w - 2 * m) * frac
        d.text((x - 10, h - m + 8), str(int(steps[-1] * frac)), fill="black")
    d.line([xy(s, v) for s, v in zip(steps, vals)], fill=(160, 190, 235))
    avg = [sum(vals[max(0, i - 49): i + 1]) / len(vals[max(0, i - 49): i + 1]) for i in range(len(vals))]
    d.line([xy(s, v) for s, v in zip(steps, avg)], fill=(20, 60, 160), width=2)
    d.text((m, 20), f"{title}: training loss (cross-entropy on answer tokens, log scale) vs step", fill="black")
    img.save(path)


def clip_proc(size):
    return {"size": {"shortest_edge": size}, "crop_size": {"height": size, "width": size}, "resample": 3,
            "do_center_crop": True, "image_mean": MEAN, "image_std": STD}


def parse_args():
    ap = argparse.ArgumentParser(description="Train a tiny LLaVA on generated scenes.")
    ap.add_argument("--variant", choices=["f32", "bitnet"], default="f32")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--max-minutes", type=float, default=0,
                    help="wall-time budget: the lr schedule follows whichever of steps and time is further along, "
                         "so a slow machine still anneals to zero by then (0: steps only)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is much faster on a busy machine)")
    ap.add_argument("--pool-images", type=int, default=20000)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--probe-every", type=int, default=250, help="held-out teacher-forced probe (0: off)")
    ap.add_argument("--init", type=Path, help="continue from this earlier run's output folder (its hf/ export)")
    ap.add_argument("--aux-weight", type=float, default=1.0,
                    help="weight of the tower's auxiliary slot loss (tiny_llava.SlotProbe; 0: off)")
    ap.add_argument("--image-size", type=int, default=72, help="vqa_gen.SIZE")
    ap.add_argument("--patch", type=int, default=24, help="vqa_gen.CELL: one slot per patch")
    ap.add_argument("--vis-hidden", type=int, default=128)
    ap.add_argument("--vis-layers", type=int, default=3)
    ap.add_argument("--vis-heads", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=512)
    return ap.parse_args()


def main():
    ensure_venv()
    args = parse_args()

    import torch
    from tiny_llava import BitnetLlava, LlavaLoss, build_llava

    import goldens

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    tok_json = tokenizer_json()
    tok = load_tokenizer(args.variant == "f32")
    n_img = (args.image_size // args.patch) ** 2
    data = Data(args, tok, args.variant, n_img)

    def make(vocab, ids):
        if args.variant == "f32":
            return build_llava(args, vocab, ids("<image>"), ids("<|endoftext|>"), ids("<|im_end|>"))
        return BitnetLlava(args, vocab)

    net = make(len(data.used), lambda t: int(data.compact[tok.convert_tokens_to_ids(t)]))
    net = LlavaLoss(net) if args.variant == "f32" else net
    n_params = sum(p.numel() for p in net.parameters())
    print(f"{args.variant}: {n_params / 1e6:.2f} M parameters trained, {n_img} image tokens", flush=True)
    if args.init:
        load_init(args, net, torch.tensor(data.used))
    aux = make_slot_probe(args, net) if args.aux_weight > 0 else None
    t0 = time.time()
    log = train(args, net, data, n_img, args.out, aux)
    wall = time.time() - t0
    model = make(len(tok), tok.convert_tokens_to_ids)
    expand_vocab(net.model if args.variant == "f32" else net, model, torch.tensor(data.used))
    n_params = sum(p.numel() for p in model.parameters())
    plot_loss(log, args.out / "loss.png", f"tiny LLaVA {args.variant}")
    hf = args.out / "hf"
    if args.variant == "f32":
        goldens.export_f32(model, tok, hf, clip_proc(args.image_size), TEMPLATE)
    else:
        from tiny_llava import export_bitnet

        export_bitnet(model, args, hf, tok_json, len(tok), tok.eos_token_id, tok.pad_token_id, TEMPLATE,
                      clip_proc(args.image_size))
    cases = goldens.write(args.variant, hf, prompt_text, data.prompt_ids)
    info = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "parameters": n_params, "steps_done": len(log), "wall_seconds": round(wall, 1),
            "steps_per_second": round(len(log) / wall, 4), "final_loss_avg50": sum(v for *_, v in log[-50:]) / len(log[-50:]),
            "torch": torch.__version__, "golden_cases": cases}
    (args.out / "train.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps({k: v for k, v in info.items() if k != "args"}), flush=True)


if __name__ == "__main__":
    main()
