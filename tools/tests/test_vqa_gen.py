"""Unit tests of tools/vqa_gen.py (run by tools/test.sh: python -m unittest discover tools/tests)."""

import random
import sys
import unittest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vqa_gen as g  # noqa: E402


class Scenes(unittest.TestCase):
    def test_seeded_and_deterministic(self):
        a, sa, qa = g.example(42)
        b, sb, qb = g.example(42)
        self.assertEqual(sa, sb)
        self.assertEqual(qa, qb)
        self.assertEqual(a.tobytes(), b.tobytes())
        self.assertNotEqual(g.example(43)[0].tobytes(), a.tobytes())
        self.assertEqual(a.size, (g.SIZE, g.SIZE))

    def test_coverage_over_many_seeds(self):
        scenes = [g.sample_scene(s) for s in range(400)]
        objs = [o for s in scenes for o in s["objects"]]
        self.assertEqual({o["shape"] for o in objs}, set(g.SHAPES))
        self.assertEqual({o["colour"] for o in objs}, set(g.COLOURS))
        self.assertGreaterEqual(len(g.COLOURS), 8)
        self.assertEqual({o["slot"] for o in objs}, set(g.SLOTS))
        self.assertEqual({len(s["objects"]) for s in scenes}, {1, 2, 3, 4})
        self.assertEqual({s["background"] for s in scenes}, set(g.BACKGROUNDS))
        self.assertTrue(any(s["text"] for s in scenes) and any(not s["text"] for s in scenes))
        kinds = {k for s in scenes[:50] for k, _, _ in g.questions(s)}
        self.assertEqual(kinds, {"colour", "shape", "count", "position", "size", "text", "describe"})

    def test_object_colour_is_drawn_at_its_slot(self):
        # a large circle or square covers its slot centre: the pixel there has the object's colour
        checked = 0
        for seed in range(300):
            img, scene, _ = g.example(seed)
            px = np.asarray(img).astype(int)
            for o in scene["objects"]:
                if o["size"] == "large" and o["shape"] in ("circle", "square"):
                    x, y = g.SLOTS[o["slot"]]
                    err = np.abs(px[y, x] - np.array(g.COLOURS[o["colour"]])).max()
                    self.assertLessEqual(err, 12, (seed, o))
                    checked += 1
        self.assertGreater(checked, 50)

    def test_text_is_rendered_only_when_present(self):
        with_text = next(s for s in range(100) if g.sample_scene(s)["text"])
        scene = g.sample_scene(with_text)
        blank = dict(scene, text=None)
        diff = np.abs(np.asarray(g.render(scene)).astype(int) - np.asarray(g.render(blank)).astype(int))
        ys = np.nonzero(diff.max(-1))[0]
        self.assertGreater(len(ys), 0)
        cy = g.SLOTS[scene["text_slot"]][1]
        self.assertTrue(abs(ys.min() - cy) < 10 and abs(ys.max() - cy) < 10)

    def test_answers_follow_the_scene(self):
        for seed in range(200):
            scene = g.sample_scene(seed)
            for kind, q, a in g.questions(scene, random.Random(seed)):
                if q == "How many shapes are there?":
                    self.assertIn(g.NUMBERS[len(scene["objects"])], a)
                if kind == "colour":
                    shape = q.split()[-1].rstrip("?")
                    (o,) = [o for o in scene["objects"] if o["shape"] == shape]
                    self.assertEqual(a, f"The {shape} is {o['colour']}.")
                if kind == "text" and scene["text"]:
                    self.assertEqual(a, f"It says {scene['text']}.")
                if kind == "describe":
                    self.assertEqual(sum(a.count(s) for s in g.SHAPES), len(scene["objects"]))

    def test_splits_are_disjoint_and_heldout_is_large(self):
        train, held = set(g.split_seeds("train", 5000)), set(g.split_seeds("heldout", 80))
        self.assertFalse(train & held)
        n = sum(len(g.example(s)[2]) for s in held)
        self.assertGreaterEqual(n, 200)


class CommittedSplit(unittest.TestCase):
    def test_heldout_fixture_is_the_generators_output(self):
        # tests/fixtures/tinyllava/heldout (asked by tests/tiny_llava.rs) is what the generator writes today
        import json
        import tempfile

        root = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "tinyllava" / "heldout"
        with tempfile.TemporaryDirectory() as tmp:
            rows = g.write_split("heldout", 80, tmp, per_image=3)
            committed = [json.loads(line) for line in open(root / "questions.jsonl")]
            self.assertEqual(rows, committed, "re-run: python3 tools/eval_heldout.py --write ...")
            for name in sorted({r["image"] for r in rows}):
                a = np.asarray(g.Image.open(Path(tmp) / name))
                b = np.asarray(g.Image.open(root / name))
                self.assertTrue(np.array_equal(a, b), name)
        self.assertGreaterEqual(len(rows), 200)
        self.assertTrue(all(r["seed"] >= g.HELDOUT_BASE for r in rows))

    def test_calib_set_scenes_are_the_generators_output(self):
        # data/calib-vlm (the converter's built-in LLaVA calibration set, tools/calib_set.py): its scenes
        # come from the calib split, disjoint from train and held-out, with one of their own questions
        root = Path(__file__).resolve().parents[2] / "data" / "calib-vlm"
        scenes = sorted(root.glob("*-scene-*.png"))
        self.assertGreaterEqual(len(scenes), 30)
        self.assertEqual(len(list(root.glob("*-photo-*.jpg"))), 6)
        for p in scenes:
            seed = int(p.stem.split("-")[-1])
            self.assertGreaterEqual(seed, g.CALIB_BASE)
            scene = g.sample_scene(seed)
            self.assertTrue(np.array_equal(np.asarray(g.render(scene)), np.asarray(g.Image.open(p))), p.name)
            q, a = p.with_suffix(".txt").read_text().strip().split("\n\n")
            self.assertIn((q, a), [(q2, a2) for _, q2, a2 in g.questions(scene)], p.name)
        held = set(g.split_seeds("heldout", g.CALIB_BASE - g.HELDOUT_BASE))
        self.assertFalse(held & set(g.split_seeds("calib", len(scenes))))


class Judge(unittest.TestCase):
    def test_normalization(self):
        self.assertTrue(g.judge("What colour is the star?", "The star is orange.", "the star is Orange"))
        self.assertTrue(g.judge("How many shapes are there?", "There are two shapes.", "There are 2 shapes."))
        self.assertTrue(g.judge("Where is the red circle?", "It is in the centre.", "It is in the center."))
        self.assertTrue(g.judge("What colour is the star?", "The star is orange.", "It is orange."))

    def test_wrong_answers_fail(self):
        self.assertFalse(g.judge("What colour is the star?", "The star is orange.", "The star is red."))
        self.assertFalse(g.judge("What colour is the star?", "The star is orange.", ""))
        self.assertFalse(g.judge("How many shapes are there?", "There are two shapes.", "There are three shapes."))
        self.assertFalse(g.judge("Where is the red circle?", "It is on the left.", "It is on the right."))
        d = "A large red circle on the left and a small blue star at the top on a plain background."
        self.assertTrue(g.judge("Describe the image.", d, d.lower()))
        self.assertFalse(g.judge("Describe the image.", d, d.replace("small", "large")))
        self.assertFalse(g.judge("Describe the image.", d, "A large red circle on the left on a plain background."))


if __name__ == "__main__":
    unittest.main()
