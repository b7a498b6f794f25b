#!/usr/bin/env python3
"""Write random-weight checkpoints with the published shapes and layouts of the seed models (the scale kit).

Usage (from the repository root; idempotent, seeded):

    python3 tools/scale/make_checkpoints.py                      # all four
    python3 tools/scale/make_checkpoints.py olmo-bitnet-1b gemma-2b
    python3 tools/scale/make_checkpoints.py --list               # names, sizes, where they go

Output: .cache/scale/src/<name>/ (gitignored; `--out DIR` for elsewhere). A folder holding the stamp file
`.scale-kit.json` with the same spec is complete and is skipped; anything else is rewritten (into
`<name>.partial/`, renamed when done, so an interrupted run never leaves a folder that looks complete).

| name | published checkpoint | layout written here |
|---|---|---|
| llava-1.5-7b | llava-hf/llava-1.5-7b-hf | transformers 4.x `LlavaForConditionalGeneration`, 3 shards + index |
| llava-v1.6-mistral-7b | llava-hf/llava-v1.6-mistral-7b-hf | `LlavaNextForConditionalGeneration`, 4 shards + index |
| gemma-2b | Intel/llava-gemma-2b | `LlavaForConditionalGeneration` with a Gemma-2B decoder (tied head), 2 shards |
| olmo-bitnet-1b | IntelLabs/LlavaOLMoBitnet1B | LLaVA's original code base (`LlavaMetaModel`, OLMo-Bitnet-1B decoder), one file |

What is exact and what is not:
- Tensor names, shapes and the config.json keys are the published ones (llava-hf configs copied from the
  repositories, which leave the Llama/Mistral defaults out: hidden_size 4096, 32 layers, 32 heads). Weights are
  float16 (Intel/llava-gemma-2b publishes float32; IntelLabs/LlavaOLMoBitnet1B float32 latent weights) drawn
  N(0, 0.02) (norm weights 1 + N(0, 0.02); Gemma's (1 + w) norms N(0, 0.02)). Values come from a seeded pool
  of 16.8 M float16 numbers read at a random offset per tensor (cheap: the writer is disk-bound). Rows of the
  output head / tied embedding past the tokenizer's vocabulary, and the EOS row, are scaled by 0.01 so that a
  greedy random-weight model neither picks a token the tokenizer cannot decode nor stops early.
- Shard boundaries follow transformers' 5 GB rule on float16 bytes (the file names and the index format are
  the real ones; which tensor lands in which shard may differ from the published files).
- Tokenizers: the real vocabularies where the project has them (Mistral-7B v1's 32000, from the llava15-llama
  fixture, plus `<image>` 32000 and `<pad>` 32001 as llava-hf adds them — LLaVA-1.5's own is Llama-2's, same
  size; OLMo's gpt-neox-olmo-dolma-v1_5, 50280, exactly LlavaOLMoBitnet1B's). Gemma's 256000-token
  SentencePiece vocabulary is not reachable here: the llava-gemma fixture's small byte-fallback BPE is padded
  with `<unusedN>` tokens to 256000 with Gemma's special ids (`<pad>` 0, `<eos>` 1, `<bos>` 2, `<unk>` 3,
  `<start_of_turn>` 106, `<end_of_turn>` 107) and `<image>` at 256000, as Intel's conversion adds it.
- Chat templates: the project's fixture templates (same prompt format as the real ones). LLaVA's original code
  base keeps its conversation templates in Python, so olmo-bitnet-1b gets the LLaVA-v1 `USER: ... ASSISTANT:`
  format as chat_template.jinja (added by the kit), and its CLIP tower config under
  `openai/clip-vit-large-patch14-336/` (the folder `mm_vision_tower` names, as a local copy of that repo).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
DEFAULT_OUT = ROOT / ".cache" / "scale" / "src"
STAMP = ".scale-kit.json"
KIT_VERSION = 1
SEED = 20261207
POOL_N = (1 << 24) + 4099  # not a multiple of any model dimension: rows do not repeat exactly
SHARD_BYTES = 5_000_000_000  # transformers' max_shard_size "5GB"
NUMPY = "numpy==2.4.6"  # the fixtures' pin


def ensure_numpy():
    """Run under a Python that has numpy: the fixtures' venv if it exists, else .cache/scale-venv (numpy only)."""
    try:
        import numpy  # noqa: F401

        return
    except ImportError:
        pass
    for venv in (ROOT / ".cache" / "fixtures-venv", ROOT / ".cache" / "scale-venv"):
        py = venv / "bin" / "python"
        if py.exists() and subprocess.call([str(py), "-c", "import numpy"], stderr=subprocess.DEVNULL) == 0:
            os.execv(str(py), [str(py), __file__] + sys.argv[1:])
    venv = ROOT / ".cache" / "scale-venv"
    print(f"make_checkpoints: creating {venv.relative_to(ROOT)} with {NUMPY}", file=sys.stderr)
    subprocess.check_call([sys.executable, "-m", "venv", str(venv)])
    subprocess.check_call([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", NUMPY])
    os.execv(str(venv / "bin" / "python"), [str(venv / "bin" / "python"), __file__] + sys.argv[1:])


# ----------------------------------------------------------------------------------------------
# Tensor lists


class T:
    """One tensor: `init` is `w` (N(0, 0.02)), `one` (1 + N(0, 0.02)); `quiet` lists rows scaled by 0.01."""

    def __init__(self, name, shape, init="w", quiet=()):
        self.name, self.shape, self.init, self.quiet = name, list(shape), init, sorted(set(quiet))

    @property
    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self):
        return 2 * self.numel


CLIP_L336 = {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096, "model_type": "clip_vision_model",
             "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768,
             "vocab_size": 32000}


def clip_tensors(prefix, c=CLIP_L336):
    """CLIPVisionModel's state dict (`vision_model.` level included in `prefix`), ViT-L/14-336: all 24 layers."""
    d, ff = c["hidden_size"], c["intermediate_size"]
    pos = (c["image_size"] // c["patch_size"]) ** 2 + 1
    t = [T(prefix + "embeddings.class_embedding", [d]),
         T(prefix + "embeddings.patch_embedding.weight", [d, 3, c["patch_size"], c["patch_size"]]),
         T(prefix + "embeddings.position_embedding.weight", [pos, d]),
         T(prefix + "pre_layrnorm.weight", [d], "one"), T(prefix + "pre_layrnorm.bias", [d])]
    for i in range(c["num_hidden_layers"]):
        p = f"{prefix}encoder.layers.{i}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            t += [T(p + f"self_attn.{proj}.weight", [d, d]), T(p + f"self_attn.{proj}.bias", [d])]
        t += [T(p + "layer_norm1.weight", [d], "one"), T(p + "layer_norm1.bias", [d]),
              T(p + "mlp.fc1.weight", [ff, d]), T(p + "mlp.fc1.bias", [ff]),
              T(p + "mlp.fc2.weight", [d, ff]), T(p + "mlp.fc2.bias", [d]),
              T(p + "layer_norm2.weight", [d], "one"), T(p + "layer_norm2.bias", [d])]
    t += [T(prefix + "post_layernorm.weight", [d], "one"), T(prefix + "post_layernorm.bias", [d])]
    return t


def quiet_rows(rows, vocab, eos):
    """Head rows a random model must not pick: padding past the tokenizer's vocabulary, and EOS."""
    return list(range(vocab, rows)) + [e for e in eos if e < rows]


def llama_tensors(prefix, head, d, ff, layers, heads, kv_heads, head_dim, rows, vocab, eos, norm="one", tied=False):
    """HF Llama/Mistral/Gemma decoder (`prefix` = `language_model.model.`), head at `head` unless tied."""
    q = quiet_rows(rows, vocab, eos)
    t = [T(prefix + "embed_tokens.weight", [rows, d], quiet=q if tied else ())]
    for i in range(layers):
        p = f"{prefix}layers.{i}."
        t += [T(p + "self_attn.q_proj.weight", [heads * head_dim, d]),
              T(p + "self_attn.k_proj.weight", [kv_heads * head_dim, d]),
              T(p + "self_attn.v_proj.weight", [kv_heads * head_dim, d]),
              T(p + "self_attn.o_proj.weight", [d, heads * head_dim]),
              T(p + "mlp.gate_proj.weight", [ff, d]), T(p + "mlp.up_proj.weight", [ff, d]),
              T(p + "mlp.down_proj.weight", [d, ff]),
              T(p + "input_layernorm.weight", [d], norm), T(p + "post_attention_layernorm.weight", [d], norm)]
    t.append(T(prefix + "norm.weight", [d], norm))
    if not tied:
        t.append(T(head, [rows, d], quiet=q))
    return t


def projector(prefix, l1, l2, mm, d):
    return [T(f"{prefix}{l1}.weight", [d, mm]), T(f"{prefix}{l1}.bias", [d]),
            T(f"{prefix}{l2}.weight", [d, d]), T(f"{prefix}{l2}.bias", [d])]


# ----------------------------------------------------------------------------------------------
# Published configs and processor files

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def clip_preprocessor(processor_class, **extra):
    p = {"crop_size": {"height": 336, "width": 336}, "do_center_crop": True, "do_convert_rgb": True,
         "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": CLIP_MEAN,
         "image_processor_type": "CLIPImageProcessor", "image_std": CLIP_STD, "processor_class": processor_class,
         "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 336}}
    p.update(extra)
    return dict(sorted(p.items()))


def fixture_template(name):
    return (FIXTURES / "llava" / name / "chat_template.jinja").read_text(encoding="utf-8")


def mistral_v1_tokenizer_files():
    """tokenizer.json of the llava15-llama fixture: Mistral-7B v1 (32000) + `<image>` 32000 + `<pad>` 32001."""
    src = FIXTURES / "llava" / "llava15-llama"
    cfg = json.loads((src / "tokenizer_config.json").read_text())
    for k in ("is_local", "local_files_only", "backend"):
        cfg.pop(k, None)
    cfg["add_bos_token"], cfg["add_eos_token"] = True, False
    return {
        "tokenizer.json": (src / "tokenizer.json").read_bytes(),
        "tokenizer_config.json": cfg,
        "special_tokens_map.json": {"bos_token": "<s>", "eos_token": "</s>", "image_token": "<image>",
                                    "pad_token": "<pad>", "unk_token": "<unk>"},
        "added_tokens.json": {"<image>": 32000, "<pad>": 32001},
    }


def llava15():
    """llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336 + mlp2x_gelu + Vicuna-7B v1.5 (Llama-2-7B shapes)."""
    d, ff, layers, heads, rows, vocab = 4096, 11008, 32, 32, 32064, 32002
    config = {
        "architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100, "image_token_index": 32000,
        "model_type": "llava", "pad_token_id": 32001, "projector_hidden_act": "gelu",
        "text_config": {"_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"],
                        "max_position_embeddings": 4096, "model_type": "llama", "rms_norm_eps": 1e-05,
                        "torch_dtype": "float16", "vocab_size": rows},
        "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.36.0.dev0",
        "vision_config": CLIP_L336, "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
        "vocab_size": rows,
    }
    tensors = (clip_tensors("vision_tower.vision_model.")
               + projector("multi_modal_projector.", "linear_1", "linear_2", 1024, d)
               + llama_tensors("language_model.model.", "language_model.lm_head.weight", d, ff, layers, heads, heads,
                               128, rows, vocab, [2]))
    files = mistral_v1_tokenizer_files()
    files.update({
        "config.json": config,
        "generation_config.json": {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2,
                                   "pad_token_id": 32001, "transformers_version": "4.36.0.dev0"},
        "preprocessor_config.json": clip_preprocessor("LlavaProcessor"),
        "processor_config.json": {"image_token": "<image>", "num_additional_image_tokens": 1, "patch_size": 14,
                                  "processor_class": "LlavaProcessor", "vision_feature_select_strategy": "default"},
        "chat_template.json": {"chat_template": fixture_template("llava15-llama")},
    })
    return {"published": "llava-hf/llava-1.5-7b-hf", "tensors": tensors, "files": files, "single_file": False}


PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


def llava_next_mistral():
    """llava-hf/llava-v1.6-mistral-7b-hf: CLIP ViT-L/14-336, anyres, image_newline, Mistral-7B-Instruct-v0.2."""
    d, ff, layers, heads, kv, rows, vocab = 4096, 14336, 32, 32, 8, 32064, 32002
    config = {
        "architectures": ["LlavaNextForConditionalGeneration"], "ignore_index": -100,
        "image_grid_pinpoints": PINPOINTS, "image_token_index": 32000, "model_type": "llava_next",
        "projector_hidden_act": "gelu",
        "text_config": {"_name_or_path": "mistralai/Mistral-7B-Instruct-v0.2", "architectures": ["MistralForCausalLM"],
                        "intermediate_size": ff, "max_position_embeddings": 32768, "model_type": "mistral",
                        "num_key_value_heads": kv, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
                        "sliding_window": None, "torch_dtype": "bfloat16", "vocab_size": rows},
        "torch_dtype": "float16", "transformers_version": "4.39.0.dev0", "use_image_newline_parameter": True,
        "vision_config": CLIP_L336, "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
        "vocab_size": rows,
    }
    tensors = ([T("image_newline", [d])] + clip_tensors("vision_tower.vision_model.")
               + projector("multi_modal_projector.", "linear_1", "linear_2", 1024, d)
               + llama_tensors("language_model.model.", "language_model.lm_head.weight", d, ff, layers, heads, kv, 128,
                               rows, vocab, [2]))
    files = mistral_v1_tokenizer_files()
    pre = clip_preprocessor("LlavaNextProcessor", image_grid_pinpoints=PINPOINTS, do_pad=True,
                            image_processor_type="LlavaNextImageProcessor", aspect_ratio_setting="anyres")
    files.update({
        "config.json": config,
        "generation_config.json": {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2,
                                   "transformers_version": "4.39.0.dev0"},
        "preprocessor_config.json": pre,
        "processor_config.json": {"image_token": "<image>", "num_additional_image_tokens": 1, "patch_size": 14,
                                  "processor_class": "LlavaNextProcessor",
                                  "vision_feature_select_strategy": "default"},
        "chat_template.json": {"chat_template": fixture_template("llavanext-mistral")},
    })
    return {"published": "llava-hf/llava-v1.6-mistral-7b-hf", "tensors": tensors, "files": files,
            "single_file": False}


GEMMA_VOCAB = 256000


def gemma_tokenizer_json():
    """The llava-gemma fixture's byte-fallback BPE re-laid to Gemma-1's ids and padded to 256000 + `<image>`."""
    tok = json.loads((FIXTURES / "llava" / "llava-gemma" / "tokenizer.json").read_text(encoding="utf-8"))
    old = tok["model"]["vocab"]
    fixed = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<start_of_turn>": 106, "<end_of_turn>": 107}
    vocab = dict(fixed)
    for i in range(4, 106):
        vocab[f"<unused{i - 4}>"] = i  # Gemma's <mask>, <2mass>, [@BOS@], <unused0..98> live here
    nxt = 108
    for t, _ in sorted(old.items(), key=lambda kv: kv[1]):
        if t in vocab or t == "<image>":
            continue
        vocab[t] = nxt
        nxt += 1
    k = 102
    while nxt < GEMMA_VOCAB:
        vocab[f"<unused{k}>"] = nxt
        nxt += 1
        k += 1
    tok["model"]["vocab"] = vocab
    specials = list(fixed) + ["<image>"]
    ids = dict(fixed, **{"<image>": GEMMA_VOCAB})
    tok["added_tokens"] = [{"id": ids[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                            "normalized": False, "special": True} for s in specials]
    tok["post_processor"]["special_tokens"]["<bos>"]["ids"] = [2]
    return json.dumps(tok, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def llava_gemma():
    """Intel/llava-gemma-2b: CLIP ViT-L/14-336 + mlp2x_gelu + Gemma-2B (tied head; vocab 256000 + <image>, padded
    to a multiple of 64 = 256064 rows, as Intel's conversion script resizes it)."""
    d, ff, layers, heads, kv, hd, rows = 2048, 16384, 18, 8, 1, 256, 256064
    config = {
        "_name_or_path": "Intel/llava-gemma-2b", "architectures": ["LlavaForConditionalGeneration"],
        "ignore_index": -100, "image_token_index": GEMMA_VOCAB, "model_type": "llava", "pad_token_id": 0,
        "projector_hidden_act": "gelu",
        "text_config": {"_name_or_path": "google/gemma-2b-it", "architectures": ["GemmaForCausalLM"],
                        "bos_token_id": 2, "eos_token_id": 1, "head_dim": hd, "hidden_act": "gelu",
                        "hidden_activation": None, "hidden_size": d, "intermediate_size": ff,
                        "max_position_embeddings": 8192, "model_type": "gemma", "num_attention_heads": heads,
                        "num_hidden_layers": layers, "num_key_value_heads": kv, "pad_token_id": 0,
                        "rope_scaling": None, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
                        "vocab_size": rows},
        "torch_dtype": "float32", "transformers_version": "4.39.0.dev0", "vision_config": CLIP_L336,
        "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
    }
    tensors = (clip_tensors("vision_tower.vision_model.")
               + projector("multi_modal_projector.", "linear_1", "linear_2", 1024, d)
               + llama_tensors("language_model.model.", None, d, ff, layers, heads, kv, hd, rows, GEMMA_VOCAB + 1, [1],
                               norm="w", tied=True))
    tok_cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<bos>", "eos_token": "<eos>",
               "pad_token": "<pad>", "unk_token": "<unk>", "additional_special_tokens": ["<start_of_turn>",
                                                                                         "<end_of_turn>"],
               "model_max_length": 1000000000000000019884624838656, "processor_class": "LlavaProcessor",
               "tokenizer_class": "GemmaTokenizer", "spaces_between_special_tokens": False,
               "clean_up_tokenization_spaces": False}
    files = {
        "config.json": config,
        "generation_config.json": {"_from_model_config": True, "bos_token_id": 2, "eos_token_id": 1,
                                   "pad_token_id": 0, "transformers_version": "4.39.0.dev0"},
        "preprocessor_config.json": clip_preprocessor("LlavaProcessor"),
        "processor_config.json": {"image_token": "<image>", "num_additional_image_tokens": 1, "patch_size": 14,
                                  "processor_class": "LlavaProcessor", "vision_feature_select_strategy": "default"},
        "tokenizer.json": gemma_tokenizer_json(),
        "tokenizer_config.json": tok_cfg,
        "special_tokens_map.json": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                                    "unk_token": "<unk>",
                                    "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]},
        "added_tokens.json": {"<image>": GEMMA_VOCAB},
        "chat_template.json": {"chat_template": fixture_template("llava-gemma")},
    }
    return {"published": "Intel/llava-gemma-2b", "tensors": tensors, "files": files, "single_file": False}


OLMO_TOWER = "openai/clip-vit-large-patch14-336"


def llava_olmo_bitnet():
    """IntelLabs/LlavaOLMoBitnet1B: LLaVA original code base, OLMo-Bitnet-1B (OLMo-1B shapes, BitLinear158 block
    linears; d_model 2048, 16 heads, 16 layers, mlp_ratio 8, vocab 50280 in 50304 embedding rows, tied), CLIP
    ViT-L/14-336 embedded under model.vision_tower.vision_tower, mlp2x_gelu projector."""
    d, layers, ratio, rows, vocab, eos = 2048, 16, 8, 50304, 50280, 50279
    base = json.loads((FIXTURES / "bitnet" / "tiny" / "config.json").read_text())
    config = dict(base, d_model=d, n_heads=16, n_layers=layers, mlp_ratio=ratio, mm_hidden_size=1024,
                  mm_vision_tower=OLMO_TOWER)
    ff = ratio * d
    t = [T("model.transformer.wte.weight", [rows, d], quiet=quiet_rows(rows, vocab, [eos]))]
    for i in range(layers):
        p = f"model.transformer.blocks.{i}."
        t += [T(p + "att_proj.weight", [3 * d, d]), T(p + "attn_out.weight", [d, d]),
              T(p + "ff_proj.weight", [ff, d]), T(p + "ff_out.weight", [d, ff // 2])]
    t += projector("model.mm_projector.", "0", "2", 1024, d)
    t += clip_tensors("model.vision_tower.vision_tower.vision_model.")
    src = FIXTURES / "bitnet" / "tiny"
    tower_cfg = dict(json.loads((src / "vision_tower" / "config.json").read_text()), **CLIP_L336)
    tower_cfg.pop("transformers_version", None)
    files = {
        "config.json": config,
        "tokenizer.json": (src / "tokenizer.json").read_bytes(),
        "tokenizer_config.json": json.loads((src / "tokenizer_config.json").read_text()),
        "chat_template.jinja": fixture_template("llava15-llama").encode("utf-8"),
        f"{OLMO_TOWER}/config.json": dict(sorted(tower_cfg.items())),
        f"{OLMO_TOWER}/preprocessor_config.json": clip_preprocessor(None),
    }
    del files[f"{OLMO_TOWER}/preprocessor_config.json"]["processor_class"]
    return {"published": "IntelLabs/LlavaOLMoBitnet1B", "tensors": t, "files": files, "single_file": True}


MODELS = {
    "olmo-bitnet-1b": llava_olmo_bitnet,
    "gemma-2b": llava_gemma,
    "llava-1.5-7b": llava15,
    "llava-v1.6-mistral-7b": llava_next_mistral,
}


# ----------------------------------------------------------------------------------------------
# Writing


def plan_shards(tensors, single):
    if single:
        return [tensors]
    shards, cur, size = [], [], 0
    for t in tensors:
        if cur and size + t.nbytes > SHARD_BYTES:
            shards.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += t.nbytes
    shards.append(cur)
    return shards


def shard_names(n, single):
    return ["model.safetensors"] if single else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


def spec_digest(name, spec):
    h = hashlib.sha256()
    h.update(json.dumps([KIT_VERSION, SEED, POOL_N, name, spec["single_file"]]).encode())
    for t in spec["tensors"]:
        h.update(json.dumps([t.name, t.shape, t.init, t.quiet[:8], len(t.quiet)]).encode())
    for k in sorted(spec["files"]):
        v = spec["files"][k]
        h.update(k.encode())
        h.update(v if isinstance(v, bytes) else json.dumps(v, sort_keys=True).encode())
    return h.hexdigest()


class Pools:
    """Seeded float16 pools: `w` N(0, 0.02), `one` 1 + N(0, 0.02), `quiet` 0.01 * `w`."""

    def __init__(self, seed):
        import numpy as np

        rng = np.random.default_rng(seed)
        w = rng.standard_normal(POOL_N, dtype=np.float32) * 0.02
        self.pools = {"w": w.astype("<f2"), "one": (1.0 + w).astype("<f2"), "quiet": (0.01 * w).astype("<f2")}
        self.rng = rng

    def write(self, f, t):
        """Stream tensor `t` to `f` in pool slices (no per-tensor buffer)."""
        row = t.numel // t.shape[0] if t.shape else 1
        segs, at = [], 0
        for r in t.quiet:  # runs of normal rows, then one quiet row each
            if r > at:
                segs.append((t.init, (r - at) * row))
            segs.append(("quiet", row))
            at = r + 1
        if at * row < t.numel:
            segs.append((t.init, t.numel - at * row))
        merged = []
        for kind, n in segs:
            if merged and merged[-1][0] == kind:
                merged[-1] = (kind, merged[-1][1] + n)
            else:
                merged.append((kind, n))
        off = int(self.rng.integers(POOL_N))
        for kind, n in merged:
            pool = self.pools[kind]
            while n:
                take = min(n, POOL_N - off)
                f.write(pool[off:off + take].data)
                n -= take
                off = (off + take) % POOL_N


def write_safetensors(path, tensors, pools):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for t in tensors:
        header[t.name] = {"dtype": "F16", "shape": t.shape, "data_offsets": [off, off + t.nbytes]}
        off += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb", buffering=16 << 20) as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for t in tensors:
            pools.write(f, t)
    return off


def write_files(folder, files):
    for rel, v in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(v, bytes):
            p.write_bytes(v)
        elif rel.endswith(".jinja"):
            p.write_text(v, encoding="utf-8")
        else:
            p.write_text(json.dumps(v, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build(name, out_root, force=False):
    spec = MODELS[name]()
    digest = spec_digest(name, spec)
    folder = out_root / name
    stamp = folder / STAMP
    if not force and stamp.exists():
        try:
            if json.loads(stamp.read_text()).get("spec_sha256") == digest:
                print(f"{name}: complete ({folder}), skipped", file=sys.stderr)
                return folder
        except (OSError, ValueError):
            pass
    tensors = spec["tensors"]
    total = sum(t.nbytes for t in tensors)
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise SystemExit(f"{name}: duplicate tensor names")
    partial = out_root / (name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    out_root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out_root).free
    if free < total + (1 << 30):
        raise SystemExit(f"{name}: needs {total / 1e9:.1f} GB + 1 GB spare, {free / 1e9:.1f} GB free under {out_root}")
    partial.mkdir(parents=True)
    t0 = time.time()
    pools = Pools(SEED + sum(name.encode()))
    shards = plan_shards(tensors, spec["single_file"])
    files = shard_names(len(shards), spec["single_file"])
    weight_map = {}
    for fname, group in zip(files, shards):
        n = write_safetensors(partial / fname, group, pools)
        weight_map.update({t.name: fname for t in group})
        print(f"{name}: {fname} {len(group)} tensors, {n / 1e9:.2f} GB ({time.time() - t0:.0f} s)", file=sys.stderr)
    if not spec["single_file"]:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (partial / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    write_files(partial, spec["files"])
    params = sum(t.numel for t in tensors)
    (partial / STAMP).write_text(json.dumps({
        "name": name, "published": spec["published"], "spec_sha256": digest, "kit_version": KIT_VERSION,
        "seed": SEED, "tensors": len(tensors), "parameters": params, "bytes": total, "shards": files,
        "dtype": "float16", "seconds": round(time.time() - t0, 1),
    }, indent=1) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    print(f"{name}: wrote {params / 1e9:.3f} B parameters, {total / 1e9:.2f} GB in {time.time() - t0:.0f} s -> {folder}",
          file=sys.stderr)
    return folder


# transformers' LlamaConfig / MistralConfig defaults: what the llava-hf configs leave out of `text_config`.
TEXT_DEFAULTS = {
    "llama": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 32, "hidden_act": "silu", "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
              "max_position_embeddings": 2048, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2},
    "mistral": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                "num_key_value_heads": 8, "hidden_act": "silu", "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
                "max_position_embeddings": 131072, "tie_word_embeddings": False, "bos_token_id": 1,
                "eos_token_id": 2},
}
EXPLICIT = "-explicit-config"


def explicit_config_variant(name, out_root):
    """`<name>-explicit-config/`: the same checkpoint (shards hard-linked) whose config.json has the text model's
    transformers defaults written out. For a reader that needs them: the published llava-hf configs omit them."""
    src = out_root / name
    if not (src / STAMP).exists():
        raise SystemExit(f"{name}: write the checkpoint first")
    dst = out_root / (name + EXPLICIT)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name == "config.json" or f.is_dir():
            continue
        os.link(f, dst / f.name)
    cfg = json.loads((src / "config.json").read_text())
    text = cfg["text_config"]
    added = {k: v for k, v in TEXT_DEFAULTS[text["model_type"]].items() if k not in text}
    cfg["text_config"] = dict(sorted({**text, **added}.items()))
    (dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    print(f"{name}: {dst} (text_config defaults written out: {', '.join(sorted(added))})", file=sys.stderr)
    return dst


def main():
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", help=f"subset of {', '.join(MODELS)} (default: all)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output root (default .cache/scale/src)")
    ap.add_argument("--force", action="store_true", help="rewrite even a complete checkpoint")
    ap.add_argument("--list", action="store_true", help="print names, parameters and sizes, write nothing")
    ap.add_argument("--explicit-config", action="store_true",
                    help="also write <name>-explicit-config/ (llava-hf models): shards hard-linked, config.json with the "
                         "text model's transformers defaults written out")
    a = ap.parse_args()
    wanted = a.models or list(MODELS)
    for m in wanted:
        if m not in MODELS:
            raise SystemExit(f"unknown model {m}: choose from {', '.join(MODELS)}")
    if a.list:
        for m in wanted:
            spec = MODELS[m]()
            params = sum(t.numel for t in spec["tensors"])
            print(f"{m}\t{spec['published']}\t{params / 1e9:.3f} B params\t{2 * params / 1e9:.2f} GB f16\t"
                  f"{a.out / m}")
        return
    ensure_numpy()
    for m in wanted:
        build(m, a.out.resolve(), a.force)
        if a.explicit_config and "text_config" in MODELS[m]()["files"]["config.json"]:
            explicit_config_variant(m, a.out.resolve())


if __name__ == "__main__":
    main()
