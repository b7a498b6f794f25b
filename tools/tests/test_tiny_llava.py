"""Tests of the trainer's models (need torch + transformers: run in .cache/fixtures-venv via tools/test.sh).

- BitLinear158 (training forward) equals tests/fixtures/bitnet/reference.py's numpy BitLinear158, which the
  runtime's ternary path is tested against.
- The compact-vocabulary loss equals the full-vocabulary cross-entropy of the expanded (exported) model.
- The exported bitnet folder, run by reference.py, gives the trained torch model's first-step logits.
"""

import argparse
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "bitnet"))
try:
    import numpy as np
    import torch
    import transformers  # noqa: F401
except ImportError:  # plain python3 without the venv
    torch = None


def small_args():
    # The generator's scene size and cell (the real models' image and patch size: one slot per patch).
    return argparse.Namespace(image_size=72, patch=24, vis_hidden=32, vis_layers=2, vis_heads=2, hidden=64, layers=2,
                              heads=4, kv_heads=2, ffn=96)


@unittest.skipIf(torch is None, "torch/transformers not installed (use .cache/fixtures-venv)")
class Models(unittest.TestCase):
    def test_bitlinear_matches_reference(self):
        import reference
        from tiny_llava import BitLinear158

        torch.manual_seed(0)
        lin = BitLinear158(48, 40)
        x = torch.randn(7, 48) * 3
        with torch.no_grad():
            ours = lin(x).numpy()
        ref = reference.bitlinear(x.numpy(), lin.weight.detach().numpy())
        err = np.abs(ours - ref).max() / np.abs(ref).max()
        self.assertLess(err, 1e-5)

    def test_slot_probe_reads_the_feature_layer_at_each_slot(self):
        import train_tiny_llava as T
        import vqa_gen
        from tiny_llava import BitnetLlava, slot_weights

        # the generator's slots sit at patch centres: each slot reads exactly one patch
        w = slot_weights(vqa_gen.SIZE, vqa_gen.CELL, [vqa_gen.SLOTS[s] for s in vqa_gen.SLOT_ORDER])
        self.assertEqual(w.shape, (5, 9))
        self.assertTrue(torch.equal(w, (w > 0).float()))
        self.assertEqual(w.argmax(1).tolist(), [1, 3, 4, 5, 7])  # top, left, centre, right, bottom
        w16 = slot_weights(64, 16, [(32, 32)])  # a slot on a patch corner: four patches share it
        self.assertTrue(torch.allclose(w16.sum(1), torch.ones(1)) and int((w16 > 0).sum()) == 4)
        args = small_args()
        args.variant, args.image_size, args.patch = "bitnet", vqa_gen.SIZE, vqa_gen.CELL
        torch.manual_seed(2)
        net = BitnetLlava(args, 20)
        probe = T.make_slot_probe(args, net)
        px = torch.randn(2, 3, vqa_gen.SIZE, vqa_gen.SIZE)
        layer = net.vision_tower(px, output_hidden_states=True).hidden_states[-2]
        self.assertTrue(torch.equal(probe.feats, layer))  # the hook saw the projector's input layer
        labels = torch.from_numpy(np.stack([T.scene_labels(vqa_gen.sample_scene(s))[0] for s in (0, 1)]))
        bg = torch.tensor([T.scene_labels(vqa_gen.sample_scene(s))[1] for s in (0, 1)])
        loss = probe.loss(labels, bg)
        loss.backward()
        self.assertTrue(torch.isfinite(loss))
        self.assertIsNotNone(net.vision_tower.embeddings.patch_embedding.weight.grad)
        self.assertIsNone(net.wte.weight.grad)  # the decoder is not part of it

    def test_compact_loss_is_full_cross_entropy(self):
        import torch.nn.functional as F
        import train_tiny_llava as T
        from tiny_llava import BitnetLlava

        torch.manual_seed(1)
        args, full_vocab = small_args(), 300
        used = torch.tensor(sorted(torch.randperm(full_vocab)[:25].tolist()))
        compact = BitnetLlava(args, len(used)).eval()
        full = T.expand_vocab(compact, BitnetLlava(args, full_vocab).eval(), used)
        ids = torch.randint(0, len(used), (2, 9))
        ids[:, 2] = -200
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                 "pixel_values": torch.randn(2, 3, args.image_size, args.image_size)}
        target = torch.full_like(ids, -100)
        target[:, 4:8] = torch.randint(0, len(used), (2, 4))
        log_rest = torch.tensor(float(np.log(full_vocab - len(used))))
        with torch.no_grad():
            n_img = (args.image_size // args.patch) ** 2
            ours = T.loss_fn(compact, batch, target, n_img, "bitnet", log_rest)
            full_ids = torch.where(ids >= 0, used[ids.clamp_min(0)], ids)
            h = full.hidden(dict(batch, input_ids=full_ids))
            t = torch.cat([target[:, :2], torch.full((2, n_img - 1), -100), target[:, 2:]], 1)
            sel = t >= 0
            want = F.cross_entropy(h[sel] @ full.wte.weight.T, used[t[sel]])
        self.assertLess(abs(float(ours) - float(want)), 1e-5)

    def test_bitnet_export_runs_in_reference(self):
        import reference
        import train_tiny_llava as T
        import vqa_gen
        from tiny_llava import IMAGE_TOKEN_INDEX, BitnetLlava, export_bitnet

        torch.manual_seed(2)
        args = small_args()
        tok = T.load_tokenizer(False)
        model = BitnetLlava(args, len(tok)).eval()
        with torch.no_grad():
            model.wte.weight.normal_(0, 0.5)
        question = "What colour is the star?"
        head, tail = T.prompt_text(question).split("<image>")
        ids = tok(head)["input_ids"] + [IMAGE_TOKEN_INDEX] + tok(tail)["input_ids"]
        img = vqa_gen.render(vqa_gen.sample_scene(5))
        px = (np.asarray(img, np.float32) / 255.0 - np.array(T.MEAN, np.float32)) / np.array(T.STD, np.float32)
        batch = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
                 "pixel_values": torch.from_numpy(px).permute(2, 0, 1)[None].contiguous()}
        with torch.no_grad():
            logits = (model.hidden(batch)[0, -1] @ model.wte.weight.T).numpy()
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d)
            export_bitnet(model, args, folder, T.tokenizer_json(), len(tok), 2, 0, T.TEMPLATE, T.clip_proc(args.image_size))
            img.save(folder / "img.png")
            rec = reference.run(folder, folder / "img.png", T.prompt_text(question), n_greedy=1)
        self.assertEqual(rec["input_ids"], ids)
        top = np.argsort(-logits, kind="stable")[:10]
        self.assertEqual(rec["top10_ids"][:3], [int(i) for i in top[:3]])
        err = np.abs(np.array(rec["top10_logits"]) - logits[rec["top10_ids"]]).max() / np.abs(logits).max()
        self.assertLess(err, 1e-3)


if __name__ == "__main__":
    unittest.main()
