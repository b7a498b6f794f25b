"""The two tiny LLaVA-1.5-shaped models trained by tools/train_tiny_llava.py, and their export.

- `f32`: transformers' `LlavaForConditionalGeneration` (CLIPVisionConfig tower, 2-layer GELU projector,
  LlamaConfig decoder with tied embeddings), exported with `save_pretrained` (a standard HF folder).
- `bitnet`: the same CLIP tower (transformers' `CLIPVisionModel`) and projector around an
  OLMo-BitNet b1.58 decoder as NousResearch/OLMo-Bitnet-1B computes it (see
  tests/fixtures/bitnet/README.md): fused `att_proj`, `attn_out`, `ff_proj` (value | gate), `ff_out`
  are BitLinear158 (parameter-free RMSNorm, int8 absmax activations per token, absmean ternary
  weights per tensor) trained with the straight-through estimator; LayerNorms without affine; tied
  `wte`. Exported in the LLaVaOLMoBitnet1B layout the runtime reads (src/model/olmo_config.rs).
"""

import json
import math

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_TOKEN_INDEX = -200  # LLaVA original's placeholder (tokenizer_image_token)


def vision_config(args):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=args.vis_hidden, intermediate_size=4 * args.vis_hidden,
                            num_hidden_layers=args.vis_layers, num_attention_heads=args.vis_heads,
                            image_size=args.image_size, patch_size=args.patch, projection_dim=args.vis_hidden,
                            hidden_act="quick_gelu", layer_norm_eps=1e-5)


def build_llava(args, vocab, image_id, pad_id, eos_id):
    """The f32 variant: a standard transformers LLaVA-1.5 model (tied embeddings)."""
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    d = args.hidden
    text = LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=args.ffn, num_hidden_layers=args.layers,
                       num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, head_dim=d // args.heads,
                       rms_norm_eps=1e-5, max_position_embeddings=512,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                       tie_word_embeddings=True, bos_token_id=None, eos_token_id=eos_id, pad_token_id=pad_id)
    n_img = (args.image_size // args.patch) ** 2
    cfg = LlavaConfig(vision_config=vision_config(args), text_config=text, image_token_id=image_id,
                      projector_hidden_act="gelu", vision_feature_layer=-2, vision_feature_select_strategy="default",
                      multimodal_projector_bias=True, tie_word_embeddings=True, image_seq_length=n_img)
    model = LlavaForConditionalGeneration(cfg)
    model.tie_weights()
    return model


class LlavaLoss(nn.Module):
    """Wraps the HF model: hidden states for the whole sequence, logits only where an answer token is predicted."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def hidden(self, batch):
        out = self.model.model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"],
                               attention_mask=batch["attention_mask"])
        return out.last_hidden_state  # [b, t, d]

    def embedding(self):
        return self.model.get_input_embeddings()  # tied with lm_head


# ------------------------------------------------------------------------------------------------
# BitNet b1.58 (OLMo-Bitnet-1B decoder)


def ste_round(x):
    return x + (torch.round(x) - x).detach()


class BitLinear158(nn.Linear):
    """y = (q_x @ t^T) / (s_x * s_w): xn = RMSNorm(x) (no weight), s_x = 127 / max|xn| per token,
    q_x = clip(round(xn * s_x), -128, 127); s_w = 1 / mean|W|, t = clip(round(W * s_w), -1, 1).
    Rounding goes through the straight-through estimator (identity gradient)."""

    def __init__(self, d_in, d_out):
        super().__init__(d_in, d_out, bias=False)

    def forward(self, x):
        xn = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
        s_x = 127.0 / xn.abs().amax(-1, keepdim=True).clamp_min(1e-5)
        xq = ste_round(xn * s_x).clamp(-128, 127) / s_x
        s_w = 1.0 / self.weight.abs().mean().clamp_min(1e-5)
        wq = ste_round(self.weight * s_w).clamp(-1, 1) / s_w
        return F.linear(xq, wq)


def rope(x, theta=10000.0):
    """Rotate-half RoPE on [b, h, t, hd] (pairs i and i + hd/2)."""
    t, hd = x.shape[-2], x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = torch.arange(t, dtype=torch.float32)[:, None] * inv[None, :]  # [t, hd/2]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class OlmoBlock(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.heads = heads
        self.att_proj = BitLinear158(d, 3 * d)  # [3d, d] fused q | k | v
        self.attn_out = BitLinear158(d, d)
        self.ff_proj = BitLinear158(d, 2 * ff)  # [2ff, d] value | gate
        self.ff_out = BitLinear158(ff, d)

    def forward(self, x, mask):
        b, t, d = x.shape
        qkv = self.att_proj(F.layer_norm(x, (d,), eps=1e-5))
        q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2) for z in qkv.split(d, -1))
        att = F.scaled_dot_product_attention(rope(q), rope(k), v, attn_mask=mask)  # [b, h, t, hd]
        x = x + self.attn_out(att.transpose(1, 2).reshape(b, t, d))
        up, gate = self.ff_proj(F.layer_norm(x, (d,), eps=1e-5)).chunk(2, -1)
        return x + self.ff_out(F.silu(gate) * up)


class BitnetLlava(nn.Module):
    """CLIP tower + mlp2x_gelu projector + OLMo-BitNet decoder; the prompt holds IMAGE_TOKEN_INDEX."""

    def __init__(self, args, vocab):
        super().__init__()
        from transformers import CLIPVisionModel

        d = args.hidden
        self.vision_tower = CLIPVisionModel(vision_config(args))
        self.mm_projector = nn.Sequential(nn.Linear(args.vis_hidden, d), nn.GELU(), nn.Linear(d, d))
        self.wte = nn.Embedding(vocab, d)
        nn.init.normal_(self.wte.weight, std=0.02)
        self.blocks = nn.ModuleList(OlmoBlock(d, args.heads, args.ffn) for _ in range(args.layers))

    def hidden(self, batch):
        ids = batch["input_ids"]  # [b, t], IMAGE_TOKEN_INDEX where the image goes
        feats = self.vision_tower(batch["pixel_values"], output_hidden_states=True).hidden_states[-2][:, 1:]
        img = self.mm_projector(feats)  # [b, n_img, d]
        pos = (ids == IMAGE_TOKEN_INDEX).int().argmax(1)
        p = int(pos[0])
        assert bool((pos == p).all()), "every prompt has its image at the same position"
        e = self.wte(ids.clamp_min(0))  # [b, t, d]
        x = torch.cat([e[:, :p], img, e[:, p + 1:]], 1)  # [b, t - 1 + n_img, d]
        t = x.shape[1]
        keep = batch["attention_mask"].bool()
        keep = torch.cat([keep[:, :1].expand(-1, img.shape[1] - 1), keep], 1)  # the image is never padding
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        mask = causal[None, None] & keep[:, None, None, :]
        for blk in self.blocks:
            x = blk(x, mask)
        return F.layer_norm(x, (x.shape[-1],), eps=1e-5)

    def embedding(self):
        return self.wte  # tied output head


def export_bitnet(model, args, folder, tokenizer_json, vocab, eos_id, pad_id, chat_template, clip_proc):
    """The LLaVaOLMoBitnet1B layout (tests/fixtures/bitnet/README.md), float32 latent weights."""
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessorPil

    (folder / "vision_tower").mkdir(parents=True, exist_ok=True)
    model.vision_tower.config.save_pretrained(folder / "vision_tower")
    CLIPImageProcessorPil(**clip_proc).save_pretrained(folder / "vision_tower")
    w = {"model.transformer.wte.weight": model.wte.weight}
    for i, blk in enumerate(model.blocks):
        for name in ["att_proj", "attn_out", "ff_proj", "ff_out"]:
            w[f"model.transformer.blocks.{i}.{name}.weight"] = getattr(blk, name).weight
    for j in (0, 2):
        w[f"model.mm_projector.{j}.weight"] = model.mm_projector[j].weight
        w[f"model.mm_projector.{j}.bias"] = model.mm_projector[j].bias
    for k, v in model.vision_tower.state_dict().items():
        w["model.vision_tower.vision_tower." + k] = v
    save_file({k: v.detach().float().contiguous().clone() for k, v in w.items()}, folder / "model.safetensors",
              metadata={"format": "pt"})
    d = args.hidden
    cfg = {"architectures": ["LlavaOLMoBitnet1BForCausalLM"], "model_type": "llava_olmo_bitnet", "d_model": d,
           "n_heads": args.heads, "n_kv_heads": None, "n_layers": args.layers, "mlp_ratio": 2 * args.ffn / d,
           "mlp_hidden_size": 2 * args.ffn, "activation_type": "swiglu", "block_type": "sequential", "rope": True,
           "rope_theta": 10000.0, "alibi": False, "attention_layer_norm": False, "clip_qkv": None,
           "include_bias": False, "bias_for_layer_norm": False, "layer_norm_type": "default",
           "layer_norm_with_affine": False, "layer_norm_eps": 1e-5, "weight_tying": True, "ternary": True,
           "vocab_size": vocab, "embedding_size": vocab, "eos_token_id": eos_id, "pad_token_id": pad_id,
           "max_sequence_length": 512, "mm_vision_tower": "vision_tower", "mm_hidden_size": args.vis_hidden,
           "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
           "mm_patch_merge_type": "flat", "image_aspect_ratio": "pad", "mm_use_im_start_end": False,
           "mm_use_im_patch_token": False, "use_mm_proj": True, "tokenizer_model_max_length": 512}
    (folder / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    (folder / "tokenizer.json").write_text(tokenizer_json)
    tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
               "add_bos_token": False, "add_eos_token": False, "model_max_length": 512,
               "chat_template": chat_template}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=1) + "\n")
    (folder / "chat_template.jinja").write_text(chat_template)


def cosine_lr(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


# ------------------------------------------------------------------------------------------------
# Auxiliary supervision of the vision tower (training only; never exported)


def slot_weights(image_size, patch, slots, half=10.0):
    """[n_slots, n_patches]: the share of each slot's (2*half)^2 box that falls in each patch (rows sum to 1)."""
    g = image_size // patch
    w = torch.zeros(len(slots), g * g)
    for s, (cx, cy) in enumerate(slots):
        for py in range(g):
            for px in range(g):
                ox = max(0.0, min(cx + half, (px + 1) * patch) - max(cx - half, px * patch))
                oy = max(0.0, min(cy + half, (py + 1) * patch) - max(cy - half, py * patch))
                w[s, py * g + px] = ox * oy
    return w / w.sum(1, keepdim=True)


class SlotProbe(nn.Module):
    """Reads the tower's selected layer (the features the projector sees) at each slot and predicts what the
    generator put there: kind (empty, text, or one of the shapes), colour, size, word; and the background from
    all patches. Its cross-entropy is added to the language loss so the tower learns local, linearly readable
    scene features from the first steps instead of waiting for the decoder's gradient (which, alone, left the
    decoder on the language prior: docs/TRAINING.md)."""

    def __init__(self, tower, feature_layer, weights, dim, n_kind, n_colour, n_size, n_word, n_bg):
        super().__init__()
        enc = getattr(tower, "vision_model", tower).encoder
        self.register_buffer("weights", weights)  # [slots, patches]
        self.heads = nn.ModuleList(nn.Linear(dim, n) for n in (n_kind, n_colour, n_size, n_word))
        self.bg = nn.Linear(dim, n_bg)
        self.feats = None
        layer = enc.layers[len(enc.layers) + feature_layer]  # hidden_states[-k] is layers[L - k]'s output

        def keep(_m, _i, out):
            self.feats = out[0] if isinstance(out, tuple) else out

        layer.register_forward_hook(keep)

    def loss(self, labels, bg):
        """labels [b, slots, 4] (-100 where a head has no answer), bg [b]; after a forward of the tower."""
        x = self.feats[:, 1:]  # [b, patches, dim] without CLS
        pooled = torch.einsum("sp,bpd->bsd", self.weights, x)  # [b, slots, dim]
        total = F.cross_entropy(self.bg(x.mean(1)), bg)
        for j, head in enumerate(self.heads):
            y = labels[:, :, j].reshape(-1)
            if bool((y >= 0).any()):
                total = total + F.cross_entropy(head(pooled).reshape(y.shape[0], -1), y, ignore_index=-100)
        return total
