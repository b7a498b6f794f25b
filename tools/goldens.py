"""Export of the f32 tiny LLaVA as an HF folder and the goldens of both variants (tools/train_tiny_llava.py).

Goldens follow tests/fixtures/README.md's golden.json: three held-out cases (seeds HELDOUT_BASE + 0..2, never
trained on), each with its image (written to `<folder>/golden-images/`), chat text, input ids, first-step
top-10 ids/logits and greedy ids. f32: transformers' `LlavaForConditionalGeneration` reloaded from the
written folder, inputs from its `LlavaProcessor`. bitnet: tests/fixtures/bitnet/reference.py (numpy
BitNet b1.58 on the exported latent weights, CLIP through transformers).
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_GREEDY = 24


def export_f32(model, tok, folder, clip_proc, template):
    import torch
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    folder.mkdir(parents=True, exist_ok=True)
    model.to(torch.float32).save_pretrained(folder)
    n_extra = 1  # CLS: vision_feature_select_strategy "default" drops it
    proc = LlavaProcessor(image_processor=CLIPImageProcessorPil(**clip_proc), tokenizer=tok,
                          patch_size=model.config.vision_config.patch_size, vision_feature_select_strategy="default",
                          num_additional_image_tokens=n_extra, chat_template=template)
    proc.save_pretrained(folder)
    proc.image_processor.save_pretrained(folder)  # preprocessor_config.json, as real checkpoints have it


def cases():
    """(name, seed, question) of the three recorded cases."""
    import random

    import vqa_gen

    out, seed = [], vqa_gen.HELDOUT_BASE
    for kind in ["describe", "colour", "text"]:
        while True:
            scene = vqa_gen.sample_scene(seed)
            qa = [q for k, q, a in vqa_gen.questions(scene, random.Random(seed)) if k == kind and "no text" not in a]
            seed += 1
            if qa:
                out.append((f"{kind}-{seed - 1}", seed - 1, qa[0]))
                break
    return out


def _f32_case(model, proc, image, text, eos_id):
    import torch

    sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
    from make_fixtures import greedy

    inputs = proc(images=image, text=text, return_tensors="pt")
    inputs = {k: v for k, v in inputs.items() if k != "attention_mask"}
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.float32)
    rec = {"input_ids": inputs["input_ids"][0].tolist(),
           "num_image_tokens": int((inputs["input_ids"][0] == model.config.image_token_id).sum())}
    rec.update(greedy(model, inputs, eos_id, n=N_GREEDY))
    return rec


def write(variant, folder, prompt_text, prompt_ids):
    """Write `<folder>/golden.json`; check the exported inputs equal the training ones. Returns the cases' answers."""
    import vqa_gen

    (folder / "golden-images").mkdir(exist_ok=True)
    if variant == "f32":
        import torch
        from transformers import LlavaForConditionalGeneration, LlavaProcessor

        model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
        proc = LlavaProcessor.from_pretrained(folder)
        eos = proc.tokenizer.eos_token_id
    else:
        sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "bitnet"))
        import reference
    recs, answers = [], {}
    for name, seed, question in cases():
        img = vqa_gen.render(vqa_gen.sample_scene(seed))
        path = folder / "golden-images" / f"{name}.png"
        img.save(path)
        text = prompt_text(question)
        if variant == "f32":
            msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            assert proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False).rstrip() == text
            rec = _f32_case(model, proc, img, text, eos)
            tok = proc.tokenizer
        else:
            rec = reference.run(folder, path, text, n_greedy=N_GREEDY)
            rec.pop("pixels")
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        if rec["input_ids"] != prompt_ids(question):
            raise SystemExit(f"{name}: exported prompt ids differ from the training ones")
        answer = tok.decode(rec["greedy_ids"][: rec["greedy_ids"].index(2)] if 2 in rec["greedy_ids"] else
                            rec["greedy_ids"])
        answers[name] = {"question": question, "model": answer.strip()}
        recs.append(dict({"name": name, "seed": seed, "image": f"golden-images/{name}.png", "question": question,
                          "chat_text": text}, **rec))
    golden = {"fixture": f"tinyllava-{variant}", "eos_token_id": 2, "n_greedy": N_GREEDY,
              "note": "greedy_ids: eos not stopping; image paths relative to this folder",
              "min_margin": min(r["min_margin"] for r in recs), "cases": recs}
    (folder / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    return answers
