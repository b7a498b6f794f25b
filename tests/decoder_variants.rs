//! The one decoder under its family variants, on tiny random models held in memory:
//! Gemma-1 (embedding × sqrt(hidden) in `forward_embeds`, RMSNorm (1 + w), GeGLU, head_dim
//! from config), HF OLMo (weightless LayerNorm, clip_qkv), OLMo's own format (fused
//! `att_proj` / `ff_proj`) and OLMo-BitNet (BitLinear158). Each is checked against an
//! independent straightforward reference forward written here from the transformers /
//! OLMo / BitNet b1.58 formulas, and prefill must equal token-by-token decoding.

use std::collections::BTreeMap;
use webvlm::io::Tensor;
use webvlm::model::{Llama, LlamaConfig, LoadOptions};
use webvlm::rng::Rng;

#[derive(Clone, Copy, PartialEq)]
enum Family {
    Gemma,
    OlmoHf,
    OlmoNative,
    Bitnet,
}

const V: usize = 50;
const D: usize = 64;
const HEADS: usize = 2;
const KVH: usize = 1;
/// Head size: Gemma's comes from the config (`HEADS * 48 != D`); OLMo's is `D / HEADS`.
fn head_dim(fam: Family) -> usize {
    if fam == Family::Gemma {
        48
    } else {
        D / HEADS
    }
}
const F: usize = 80;
const LAYERS: usize = 2;

/// Dense weights of one layer, `[out, in]` row-major.
struct LayerW {
    n1: Vec<f32>,
    n2: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    down: Vec<f32>,
}

struct Model {
    fam: Family,
    embed: Vec<f32>,
    layers: Vec<LayerW>,
    norm: Vec<f32>,
    clip: Option<f32>,
    hd: usize,
}

fn model(fam: Family, seed: u64) -> Model {
    let mut r = Rng::new(seed);
    let mut u = |n: usize, s: f32| (0..n).map(|_| (r.next_f32() * 2.0 - 1.0) * s).collect::<Vec<f32>>();
    let hd = head_dim(fam);
    let (qd, kvd) = (HEADS * hd, KVH * hd);
    let layers = (0..LAYERS)
        .map(|_| LayerW {
            n1: u(D, 0.5),
            n2: u(D, 0.5),
            q: u(qd * D, 0.5),
            k: u(kvd * D, 0.5),
            v: u(kvd * D, 0.5),
            o: u(D * qd, 0.3),
            gate: u(F * D, 0.4),
            up: u(F * D, 0.4),
            down: u(D * F, 0.3),
        })
        .collect();
    let embed = u(V * D, if fam == Family::Gemma { 0.3 } else { 1.0 });
    let norm = u(D, 0.5);
    Model { fam, embed, layers, norm, clip: (fam == Family::OlmoHf).then_some(0.6), hd }
}

fn config(m: &Model) -> LlamaConfig {
    let v = match m.fam {
        Family::Gemma => serde_json::json!({
            "model_type": "gemma", "vocab_size": V, "hidden_size": D, "intermediate_size": F,
            "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KVH,
            "head_dim": m.hd, "hidden_act": "gelu", "rms_norm_eps": 1e-6, "max_position_embeddings": 64,
            "tie_word_embeddings": true
        }),
        Family::OlmoHf => serde_json::json!({
            "model_type": "olmo", "vocab_size": V, "hidden_size": D, "intermediate_size": F,
            "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KVH,
            "head_dim": m.hd, "clip_qkv": m.clip, "max_position_embeddings": 64, "tie_word_embeddings": true
        }),
        Family::OlmoNative | Family::Bitnet => serde_json::json!({
            "d_model": D, "n_heads": HEADS, "n_kv_heads": KVH, "n_layers": LAYERS, "mlp_hidden_size": 2 * F,
            "embedding_size": V, "vocab_size": V - 3, "max_sequence_length": 64, "weight_tying": true,
            "layer_norm_type": if m.fam == Family::Bitnet { "rms" } else { "default" },
            "layer_norm_with_affine": m.fam == Family::Bitnet, "ternary": m.fam == Family::Bitnet,
            "activation_type": "swiglu", "block_type": "sequential", "rope": true
        }),
    };
    LlamaConfig::from_value(&v).unwrap()
}

/// The checkpoint tensors under the family's names.
fn checkpoint(m: &Model) -> BTreeMap<String, Tensor> {
    let mut t = BTreeMap::new();
    let mut put = |name: String, shape: Vec<usize>, data: Vec<f32>| {
        t.insert(name, Tensor::f32(shape, data));
    };
    let (qd, kvd) = (HEADS * m.hd, KVH * m.hd);
    let native = matches!(m.fam, Family::OlmoNative | Family::Bitnet);
    if native {
        put("model.transformer.wte.weight".into(), vec![V, D], m.embed.clone());
        if m.fam == Family::Bitnet {
            put("model.transformer.ln_f.weight".into(), vec![D], m.norm.clone());
        }
    } else {
        put("model.embed_tokens.weight".into(), vec![V, D], m.embed.clone());
        if m.fam == Family::Gemma {
            put("model.norm.weight".into(), vec![D], m.norm.clone());
        }
    }
    for (i, l) in m.layers.iter().enumerate() {
        if native {
            let p = format!("model.transformer.blocks.{i}.");
            put(format!("{p}att_proj.weight"), vec![qd + 2 * kvd, D], [&l.q[..], &l.k, &l.v].concat());
            put(format!("{p}attn_out.weight"), vec![D, qd], l.o.clone());
            put(format!("{p}ff_proj.weight"), vec![2 * F, D], [&l.up[..], &l.gate].concat());
            put(format!("{p}ff_out.weight"), vec![D, F], l.down.clone());
            if m.fam == Family::Bitnet {
                put(format!("{p}attn_norm.weight"), vec![D], l.n1.clone());
                put(format!("{p}ff_norm.weight"), vec![D], l.n2.clone());
            }
        } else {
            let p = format!("model.layers.{i}.");
            for (n, w, o, i) in [("q", &l.q, qd, D), ("k", &l.k, kvd, D), ("v", &l.v, kvd, D), ("o", &l.o, D, qd)] {
                put(format!("{p}self_attn.{n}_proj.weight"), vec![o, i], w.clone());
            }
            for (n, w, o, i) in [("gate", &l.gate, F, D), ("up", &l.up, F, D), ("down", &l.down, D, F)] {
                put(format!("{p}mlp.{n}_proj.weight"), vec![o, i], w.clone());
            }
            if m.fam == Family::Gemma {
                put(format!("{p}input_layernorm.weight"), vec![D], l.n1.clone());
                put(format!("{p}post_attention_layernorm.weight"), vec![D], l.n2.clone());
            }
        }
    }
    t
}

#[path = "decoder_variants/reference.rs"]
mod reference;
use reference::reference_logits;

fn load(m: &Model) -> Llama {
    Llama::load(config(m), &checkpoint(m), "", &LoadOptions::default()).unwrap()
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let num = a.iter().zip(b).fold(0f32, |x, (p, q)| x.max((p - q).abs()));
    num / b.iter().fold(0f32, |x, q| x.max(q.abs()))
}

const TOKENS: [u32; 7] = [3, 17, 42, 8, 8, 29, 1];

fn check_family(fam: Family, tol: f32) {
    let m = model(fam, 11 + fam as u64);
    let llama = load(&m);
    // Input embeddings that are not rows of the table (as LLaVA's image features are).
    let mut rng = Rng::new(5);
    let x: Vec<f32> = (0..TOKENS.len() * D).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
    let mut kv = llama.new_cache(64);
    let got = llama.forward_embeds(x.clone(), TOKENS.len(), &mut kv).unwrap();
    let want = reference_logits(&m, &x, TOKENS.len());
    let e = rel_err(&got, &want);
    println!("{}: forward_embeds vs reference rel err {e:.2e}", name(fam));
    assert!(e <= tol, "{}: forward_embeds vs reference rel err {e}", name(fam));

    // Prefill equals decoding one token at a time.
    let mut kv = llama.new_cache(64);
    let full = llama.forward(&TOKENS, &mut kv).unwrap();
    let mut kv = llama.new_cache(64);
    let mut last = Vec::new();
    for t in TOKENS {
        last = llama.forward(&[t], &mut kv).unwrap();
    }
    let e = rel_err(&last, &full);
    assert!(e <= tol, "{}: step-by-step vs prefill rel err {e}", name(fam));
    let emb = llama.embed_tokens(&TOKENS).unwrap();
    let want = reference_logits(&m, &emb, TOKENS.len());
    let e = rel_err(&full, &want);
    assert!(e <= tol, "{}: forward vs reference rel err {e}", name(fam));
    assert_eq!(&emb[D..2 * D], &m.embed[17 * D..18 * D], "embed_tokens is the unscaled lookup");
}

fn name(f: Family) -> &'static str {
    ["gemma", "olmo (HF)", "olmo (native)", "olmo-bitnet"][f as usize]
}

#[test]
fn gemma_matches_reference() {
    check_family(Family::Gemma, 1e-4);
}

#[test]
fn olmo_hf_matches_reference() {
    check_family(Family::OlmoHf, 1e-4);
}

#[test]
fn olmo_native_matches_reference() {
    check_family(Family::OlmoNative, 1e-4);
}

#[test]
fn olmo_bitnet_matches_reference() {
    // Quantization boundaries may flip for a rare activation between two f32 summation orders.
    check_family(Family::Bitnet, 1e-3);
}

#[test]
fn bitnet_linears_are_ternary_and_embeddings_dense() {
    let m = model(Family::Bitnet, 3);
    let l = load(&m);
    assert_eq!(l.layers[1].q.w.format(), webvlm::quant::WeightFormat::Ternary);
    assert_eq!(l.layers[1].down.w.format(), webvlm::quant::WeightFormat::Ternary);
    assert_eq!(l.embed.w.format(), webvlm::quant::WeightFormat::F32);
    // q, k and v share the fused att_proj's scale.
    let s = |w: &webvlm::quant::QTensor| match w.data {
        webvlm::quant::QData::Ternary { scale, .. } => scale,
        _ => f32::NAN,
    };
    assert_eq!(s(&l.layers[0].q.w), s(&l.layers[0].v.w));
}

#[test]
fn gemma_config_details() {
    let c = config(&model(Family::Gemma, 1));
    assert_eq!(c.head_dim(), 48);
    assert!(c.arch.embed_scale);
    // Gemma-1 ignores `hidden_act: gelu` and uses gelu_pytorch_tanh unless hidden_activation says.
    assert_eq!(c.arch.act, webvlm::model::config::Act::GeluTanh);
    let mut v = serde_json::json!({"model_type": "gemma", "vocab_size": 4, "hidden_size": 8, "intermediate_size": 8,
        "num_hidden_layers": 1, "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": 8,
        "hidden_activation": "gelu"}); // (GemmaConfig's defaults are 16 KV heads of 256)
    assert_eq!(LlamaConfig::from_value(&v).unwrap().arch.act, webvlm::model::config::Act::Gelu);
    v["hidden_activation"] = "relu2".into();
    let e = LlamaConfig::from_value(&v).unwrap_err().to_string();
    assert!(e.contains("relu2"), "{e}");
}

/// First-step top-10 of `model` on the golden's ids against a text-only golden of
/// `tests/decoder_variants/text_goldens.json` (`make_text_goldens.py`), within 1e-3 relative.
#[cfg(not(target_arch = "wasm32"))]
fn check_text_golden(key: &str, m: &Llama) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("tests/decoder_variants/text_goldens.json")).unwrap();
    let gold: serde_json::Value = serde_json::from_str(&text).unwrap();
    let g = &gold[key];
    let nums = |k: &str| g[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<f64>>();
    let ids: Vec<u32> = nums("ids").into_iter().map(|v| v as u32).collect();
    let logits = m.forward(&ids, &mut m.new_cache(ids.len())).unwrap();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let want_ids: Vec<usize> = nums("top10_ids").into_iter().map(|v| v as usize).collect();
    assert_eq!(&order[..10], &want_ids[..], "{key}: top-10 ids");
    let err = want_ids
        .iter()
        .zip(nums("top10_logits"))
        .fold(0f64, |e, (&i, w)| e.max((logits[i] as f64 - w).abs() / w.abs()));
    println!("{key}: text top-10 max rel err {err:.2e}");
    assert!(err <= 1e-3, "{key}: top-10 logits rel err {err}");
}

/// The committed LLaVaOLMoBitnet1B-style fixture (`tests/fixtures/bitnet/tiny`: OLMo config
/// format, latent f32 weights) against the fixture's numpy BitNet reference decoder.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn bitnet_fixture_text_matches_numpy_reference() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ck = webvlm::io::open(&root.join("tests/fixtures/bitnet/tiny")).unwrap();
    let cfg = LlamaConfig::from_value(&ck.config).unwrap();
    assert!(cfg.arch.ternary && cfg.arch.bitlinear_norm);
    let m = Llama::load(cfg, ck.weights.as_ref(), "", &LoadOptions::default()).unwrap();
    check_text_golden("bitnet/tiny", &m);
}

/// The committed LLaVA-Gemma fixture's Gemma decoder (weights under `language_model.`,
/// head_dim 32 from `text_config`) against transformers on a prompt without image tokens.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn llava_gemma_fixture_text_matches_transformers() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ck = webvlm::io::open(&root.join("tests/fixtures/llava/llava-gemma")).unwrap();
    let cfg = LlamaConfig::from_value(&ck.config["text_config"]).unwrap();
    assert!(cfg.arch.embed_scale);
    let m = Llama::load(cfg, ck.weights.as_ref(), "language_model.", &LoadOptions::default()).unwrap();
    check_text_golden("llava/llava-gemma", &m);
}
