//! Shared by the io tests (`tests/safetensors.rs`, `tests/convert.rs`, `tests/manifest.rs`):
//! scratch folders, a deterministic random generator, and a tiny Llama-shaped HF checkpoint
//! (random weights in mixed dtypes, sharded in two files with an index, config, a small
//! BPE `tokenizer.json`, tokenizer and generation configs).
#![allow(dead_code)]

use half::{bf16, f16};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use webvlm::io::safetensors::{serialize, Dtype, WriteTensor};

/// An empty scratch folder under cargo's per-test-target temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join("io-tests").join(name);
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// xorshift64*: deterministic values without a rand dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

pub const HIDDEN: usize = 64;
pub const FFN: usize = 128;
pub const KV: usize = 32;
pub const LAYERS: usize = 2;
pub const VOCAB: usize = 16;

/// The tensors of the tiny checkpoint: name, shape, dtype stored in the HF files.
pub fn tiny_tensors() -> Vec<(String, Vec<usize>, Dtype)> {
    let mut v = vec![
        ("model.embed_tokens.weight".to_string(), vec![VOCAB, HIDDEN], Dtype::BF16),
        ("model.norm.weight".to_string(), vec![HIDDEN], Dtype::F32),
        ("lm_head.weight".to_string(), vec![VOCAB, HIDDEN], Dtype::F16),
        // Columns that group 64 does not divide (→ group 32) and no INT4 group divides (→ int8).
        ("model.extra_proj.weight".to_string(), vec![8, 96], Dtype::F32),
        ("model.odd_proj.weight".to_string(), vec![3, 20], Dtype::F32),
        ("model.extra_proj.bias".to_string(), vec![8], Dtype::F32),
    ];
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        for (n, shape, dt) in [
            ("self_attn.q_proj.weight", vec![HIDDEN, HIDDEN], Dtype::BF16),
            ("self_attn.k_proj.weight", vec![KV, HIDDEN], Dtype::BF16),
            ("self_attn.v_proj.weight", vec![KV, HIDDEN], Dtype::F16),
            ("self_attn.o_proj.weight", vec![HIDDEN, HIDDEN], Dtype::F32),
            ("mlp.gate_proj.weight", vec![FFN, HIDDEN], Dtype::BF16),
            ("mlp.up_proj.weight", vec![FFN, HIDDEN], Dtype::BF16),
            ("mlp.down_proj.weight", vec![HIDDEN, FFN], Dtype::F32),
            ("input_layernorm.weight", vec![HIDDEN], Dtype::F32),
            ("post_attention_layernorm.weight", vec![HIDDEN], Dtype::BF16),
        ] {
            v.push((format!("{p}.{n}"), shape, dt));
        }
    }
    v
}

/// Values rounded the way the stored dtype rounds them (what a reader must return).
pub fn encode(dtype: Dtype, v: &[f32]) -> (Vec<u8>, Vec<f32>) {
    match dtype {
        Dtype::F32 => (bytemuck::cast_slice(v).to_vec(), v.to_vec()),
        Dtype::F16 => {
            let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            (bytemuck::cast_slice(&h).to_vec(), h.iter().map(|x| x.to_f32()).collect())
        }
        Dtype::BF16 => {
            let h: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
            (bytemuck::cast_slice(&h).to_vec(), h.iter().map(|x| x.to_f32()).collect())
        }
        d => panic!("not a float dtype: {d:?}"),
    }
}

pub const TOKENIZER_JSON: &str = r#"{
  "version": "1.0",
  "truncation": null,
  "padding": null,
  "added_tokens": [
    {"id": 13, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 14, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 15, "content": "<|im_end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": null,
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
  "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
  "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
  "model": {
    "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
    "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
    "vocab": {"a": 0, "b": 1, "c": 2, "Ġ": 3, "ab": 4, "abc": 5, "Ġa": 6, "Ġab": 7, "Ġabc": 8,
              "d": 9, "e": 10, "de": 11, "Ġde": 12, "<s>": 13, "</s>": 14, "<|im_end|>": 15},
    "merges": ["Ġ a", "Ġa b", "Ġab c", "a b", "ab c", "d e", "Ġ de"]
  }
}"#;

pub const CHAT_TEMPLATE: &str = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<|im_end|>{% endfor %}";

pub fn config_json() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": VOCAB,
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": false
    })
}

/// Tensor name → (shape, values a reader must return).
pub type Expected = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Write the tiny checkpoint into `dir`; returns every tensor's expected f32 values.
pub fn write_tiny_hf(dir: &Path, seed: u64) -> Expected {
    let mut rng = Rng::new(seed);
    let mut expect = BTreeMap::new();
    let mut encoded = Vec::new();
    for (name, shape, dtype) in tiny_tensors() {
        let n: usize = shape.iter().product();
        let (bytes, vals) = encode(dtype, &rng.vec(n, 0.5));
        expect.insert(name.clone(), (shape.clone(), vals));
        encoded.push((name, shape, dtype, bytes));
    }
    // Two shards: the first half of the names in file 1, the rest in file 2.
    let half = encoded.len() / 2;
    let files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
    let mut weight_map = serde_json::Map::new();
    for (fi, part) in [&encoded[..half], &encoded[half..]].into_iter().enumerate() {
        let wts: Vec<WriteTensor> = part
            .iter()
            .map(|(n, s, d, b)| WriteTensor { name: n.clone(), dtype: *d, shape: s.clone(), data: b })
            .collect();
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        let (bytes, _) = serialize(&wts, &meta).unwrap();
        std::fs::write(dir.join(files[fi]), bytes).unwrap();
        for (n, ..) in part {
            weight_map.insert(n.clone(), files[fi].into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    write_json(&dir.join("model.safetensors.index.json"), &index);
    write_json(&dir.join("config.json"), &config_json());
    std::fs::write(dir.join("tokenizer.json"), TOKENIZER_JSON).unwrap();
    let tok_cfg = serde_json::json!({
        "bos_token": "<s>",
        "eos_token": {"content": "</s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
        "add_bos_token": true,
        "chat_template": CHAT_TEMPLATE
    });
    write_json(&dir.join("tokenizer_config.json"), &tok_cfg);
    write_json(&dir.join("generation_config.json"), &serde_json::json!({"eos_token_id": [14, 15]}));
    expect
}

pub fn write_json(path: &Path, v: &serde_json::Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}
