//! LLaVA tests on tiny random models held in memory: the processors' token counts (values
//! from a transcription of transformers' `_get_number_of_features`), NeXT packing order,
//! both checkpoint namings, feature-layer selection and input errors.

use super::*;
use crate::io::Tensor;
use serde_json::json;
use std::collections::BTreeMap;

const IMG: u32 = 39;

fn config(next: bool, layer: Value, strategy: &str) -> Value {
    serde_json::json!({
        "architectures": [if next { "LlavaNextForConditionalGeneration" } else { "LlavaForConditionalGeneration" }],
        "image_token_id": IMG,
        "vision_feature_layer": layer,
        "vision_feature_select_strategy": strategy,
        "image_grid_pinpoints": [[28, 56], [56, 28], [56, 56]],
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 3, "num_attention_heads": 2, "image_size": 28, "patch_size": 14},
        "text_config": {"model_type": "llama", "vocab_size": 40, "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 256, "rms_norm_eps": 1e-5}
    })
}

/// Random weights under transformers 5.x names (`v5`) or 4.x names.
fn weights(vin: usize, v5: bool) -> BTreeMap<String, Tensor> {
    let mut m = BTreeMap::new();
    let mut rng = crate::rng::Rng::new(7);
    let mut put = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| (rng.next_f32() * 2.0 - 1.0) * scale + offset).collect();
        m.insert(name, Tensor::f32(shape, data));
    };
    let (vp, pp, tp, head, nl) = if v5 {
        (
            "model.vision_tower.vision_model.",
            "model.multi_modal_projector.",
            "model.language_model.",
            "lm_head.",
            "model.",
        )
    } else {
        ("vision_tower.vision_model.", "multi_modal_projector.", "language_model.model.", "language_model.lm_head.", "")
    };
    put(format!("{vp}embeddings.patch_embedding.weight"), vec![32, 3, 14, 14], 0.05, 0.0);
    put(format!("{vp}embeddings.class_embedding"), vec![32], 0.5, 0.0);
    put(format!("{vp}embeddings.position_embedding.weight"), vec![5, 32], 0.5, 0.0);
    for n in ["pre_layrnorm", "post_layernorm"] {
        put(format!("{vp}{n}.weight"), vec![32], 0.1, 1.0);
        put(format!("{vp}{n}.bias"), vec![32], 0.1, 0.0);
    }
    for l in 0..3 {
        let p = format!("{vp}encoder.layers.{l}.");
        for n in ["layer_norm1", "layer_norm2"] {
            put(format!("{p}{n}.weight"), vec![32], 0.1, 1.0);
            put(format!("{p}{n}.bias"), vec![32], 0.1, 0.0);
        }
        for (n, o, i) in [("self_attn.q_proj", 32, 32), ("self_attn.k_proj", 32, 32), ("self_attn.v_proj", 32, 32)]
            .into_iter()
            .chain([("self_attn.out_proj", 32, 32), ("mlp.fc1", 64, 32), ("mlp.fc2", 32, 64)])
        {
            put(format!("{p}{n}.weight"), vec![o, i], 0.3, 0.0);
            put(format!("{p}{n}.bias"), vec![o], 0.1, 0.0);
        }
    }
    put(format!("{pp}linear_1.weight"), vec![64, vin], 0.3, 0.0);
    put(format!("{pp}linear_1.bias"), vec![64], 0.1, 0.0);
    put(format!("{pp}linear_2.weight"), vec![64, 64], 0.3, 0.0);
    put(format!("{pp}linear_2.bias"), vec![64], 0.1, 0.0);
    put(format!("{nl}image_newline"), vec![64], 1.0, 0.0);
    put(format!("{tp}embed_tokens.weight"), vec![40, 64], 1.0, 0.0);
    put(format!("{tp}norm.weight"), vec![64], 0.1, 1.0);
    put(format!("{head}weight"), vec![40, 64], 0.3, 0.0);
    for l in 0..2 {
        let p = format!("{tp}layers.{l}.");
        put(format!("{p}input_layernorm.weight"), vec![64], 0.1, 1.0);
        put(format!("{p}post_attention_layernorm.weight"), vec![64], 0.1, 1.0);
        for (n, o, i) in [("self_attn.q_proj", 64, 64), ("self_attn.k_proj", 32, 64), ("self_attn.v_proj", 32, 64)]
            .into_iter()
            .chain([("self_attn.o_proj", 64, 64), ("mlp.gate_proj", 96, 64), ("mlp.up_proj", 96, 64)])
            .chain([("mlp.down_proj", 64, 96)])
        {
            put(format!("{p}{n}.weight"), vec![o, i], 0.3, 0.0);
        }
    }
    m
}

fn tile(seed: u64) -> Vec<f32> {
    let mut rng = crate::rng::Rng::new(seed);
    (0..3 * 28 * 28).map(|_| rng.next_f32() * 4.0 - 2.0).collect()
}

fn load(next: bool, v5: bool) -> Llava {
    Llava::load(
        &config(next, Value::from(-2), "default"),
        &weights(32, v5),
        &LoadOptions::default(),
        &Default::default(),
    )
    .unwrap()
}

#[test]
fn token_counts_follow_the_processors() {
    let mut real = config(true, Value::from(-2), "default");
    real["vision_config"] = serde_json::json!({"hidden_size": 1024, "intermediate_size": 4096,
        "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 336, "patch_size": 14});
    real.as_object_mut().unwrap().remove("image_grid_pinpoints");
    let c = LlavaConfig::from_value(&real).unwrap();
    assert_eq!(c.feature_layers, vec![23]);
    let cases = [((480, 640), 2340), ((640, 480), 2352), ((336, 336), 1176), ((100, 1000), 1160)];
    for ((h, w), want) in cases.into_iter().chain([((1000, 100), 1224), ((500, 500), 2928), ((2000, 3000), 2144)]) {
        assert_eq!(c.image_tokens((h, w)).unwrap(), want, "{h}x{w}");
    }
    let l = c.next_layout((300, 1000), c.pinpoints.as_ref().unwrap()).unwrap();
    // Best fit 336x1008 (1x3 tiles of 24x24 patches); 300/1000 of 72 columns is 21.6 rows: crop 1 each side.
    assert_eq!(l, NextLayout { grid: (1, 3), crop_off: (1, 0), crop: (22, 72) });
    let tiny = LlavaConfig::from_value(&config(true, Value::from(-2), "default")).unwrap();
    for ((h, w), want) in [((30, 70), 14), ((70, 30), 16), ((28, 28), 10), ((50, 40), 24), ((17, 90), 4)] {
        assert_eq!(tiny.image_tokens((h, w)).unwrap(), want, "{h}x{w}");
    }
    real["architectures"] = serde_json::json!(["LlavaForConditionalGeneration"]);
    assert_eq!(LlavaConfig::from_value(&real).unwrap().image_tokens((480, 640)).unwrap(), 576);
    real["vision_feature_select_strategy"] = "full".into();
    assert_eq!(LlavaConfig::from_value(&real).unwrap().image_tokens((480, 640)).unwrap(), 577);
}

#[test]
fn pack_reassembles_tiles_row_by_row() {
    // g = 2, a 1x2 grid: feature value = 10 * tile + token.
    let feats: Vec<Vec<f32>> = (0..3).map(|t| (0..4).map(|k| (10 * t + k) as f32).collect()).collect();
    let full = NextLayout { grid: (1, 2), crop_off: (0, 0), crop: (2, 4) };
    let out = pack_next(&feats, &full, 2, &[-1.0]).unwrap();
    let want = [0., 1., 2., 3., 10., 11., 20., 21., -1., 12., 13., 22., 23., -1.];
    assert_eq!(out, want);
    // Cropping one column each side keeps the middle.
    let crop = NextLayout { grid: (1, 2), crop_off: (0, 1), crop: (2, 2) };
    assert_eq!(pack_next(&feats, &crop, 2, &[-1.0]).unwrap()[4..], [11., 20., -1., 13., 22., -1.]);
    assert!(pack_next(&feats[..2], &full, 2, &[-1.0]).is_err());
}

#[test]
fn both_namings_load_the_same_model() {
    let (a, b) = (load(true, true), load(true, false));
    let tiles = [tile(1), tile(2), tile(3)];
    let refs: Vec<&[f32]> = tiles.iter().map(|t| t.as_slice()).collect();
    let orig = (30, 70); // best fit 28x56: a 1x2 grid
    let fa = a.image_features(&refs, (28, 28), orig).unwrap();
    let fb = b.image_features(&refs, (28, 28), orig).unwrap();
    assert_eq!(fa, fb);
    let n = a.cfg.image_tokens(orig).unwrap();
    assert_eq!(fa.len(), n * 64);
    let ids = a.expand_image_tokens(&[1, 5, IMG, 7, 9], &[n]).unwrap();
    assert_eq!(ids.len(), 4 + n);
    let x = a.embed_with_images(&ids, &[&fa]).unwrap();
    assert_eq!(&x[2 * 64..(2 + n) * 64], &fa[..]);
    let mut kv = a.lm.new_cache(256);
    let logits = a.forward_embeds(x, ids.len(), &mut kv).unwrap();
    assert_eq!(logits.len(), 40);
    assert!(logits.iter().all(|v| v.is_finite()));
}

#[test]
fn default_strategy_drops_the_class_token_and_layers_concatenate() {
    let full = Llava::load(
        &config(false, Value::from(-2), "full"),
        &weights(32, true),
        &LoadOptions::default(),
        &Default::default(),
    )
    .unwrap();
    let def = load(false, true);
    let t = tile(4);
    let (ff, fd) = (full.tile_features(&t, 28, 28).unwrap(), def.tile_features(&t, 28, 28).unwrap());
    assert_eq!((ff.len(), fd.len()), (5 * 64, 4 * 64));
    assert_eq!(&ff[64..], &fd[..]);
    // Two layers: the projector takes 2 x 32 features; hidden state 0 is the embeddings.
    let two = Llava::load(
        &config(false, serde_json::json!([-1, 0]), "default"),
        &weights(64, true),
        &LoadOptions::default(),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(two.cfg.feature_layers, vec![3, 0]);
    assert_eq!(two.tower.layers.len(), 3);
    assert_eq!(two.tile_features(&t, 28, 28).unwrap().len(), 4 * 64);
    // A projector that does not fit the concatenated width is refused.
    assert!(Llava::load(
        &config(false, serde_json::json!([-1, 0]), "default"),
        &weights(32, true),
        &LoadOptions::default(),
        &Default::default()
    )
    .is_err());
}

#[test]
fn bad_input_is_an_error() {
    let m = load(false, true);
    assert!(m.tile_features(&tile(1)[..100], 28, 28).is_err());
    assert!(m.tile_features(&vec![0.0; 3 * 56 * 56], 56, 56).is_err());
    assert!(m.expand_image_tokens(&[1, IMG, IMG], &[4]).is_err());
    let ids = m.expand_image_tokens(&[1, IMG], &[4]).unwrap();
    assert!(m.embed_with_images(&ids, &[&[0.0; 3 * 64]]).is_err());
    assert!(LlavaConfig::from_value(&config(false, Value::from(-5), "default")).is_err());
    assert!(LlavaConfig::from_value(&config(false, Value::from(-2), "cls")).is_err());
}

/// LLaVA's original layout: `mm_*` keys read, bad values refused with the key named.
#[test]
fn original_layout_config() {
    let vision = json!({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
        "num_attention_heads": 4, "image_size": 28, "patch_size": 14});
    let base = json!({"d_model": 32, "n_heads": 4, "n_layers": 1, "vocab_size": 100, "ternary": true,
        "mm_vision_tower": "tower", "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch", "image_aspect_ratio": "pad", "vision_config": vision});
    assert!(is_llava(&base) && is_original(&base));
    let c = LlavaConfig::from_value(&base).unwrap();
    assert_eq!(
        (c.image_token_id, c.feature_layers.clone(), c.strategy),
        (ORIGINAL_IMAGE_TOKEN, vec![2], SelectStrategy::Default)
    );
    assert!(c.pad_to_square && c.text.arch.ternary && c.pinpoints.is_none());
    for (k, v, needle) in [
        ("mm_vision_select_layer", json!(-9), "mm_vision_select_layer"),
        ("mm_vision_select_feature", json!("cls"), "mm_vision_select_feature"),
        ("mm_projector_type", json!("mlp3x_gelu"), "mm_projector_type"),
        ("image_aspect_ratio", json!("anyres"), "image_aspect_ratio"),
    ] {
        let mut v2 = base.clone();
        v2[k] = v;
        let e = LlavaConfig::from_value(&v2).unwrap_err().to_string();
        assert!(e.contains(needle), "{k}: {e}");
    }
    let mut v2 = base.clone();
    v2.as_object_mut().unwrap().remove("vision_config");
    let e = LlavaConfig::from_value(&v2).unwrap_err().to_string();
    assert!(e.contains("tower/config.json"), "{e}");
}

/// `llava-hf/llava-1.5-7b-hf`'s published config, whose `text_config` leaves the sizes to
/// `LlamaConfig`'s defaults (as transformers reads it: Vicuna-7B's 4096 / 11008 / 32 / 32).
#[test]
fn published_llava15_7b_config_takes_llama_defaults() {
    let c = json!({
        "architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100, "image_token_index": 32000,
        "model_type": "llava", "pad_token_id": 32001, "projector_hidden_act": "gelu",
        "text_config": {"_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"],
            "max_position_embeddings": 4096, "model_type": "llama", "rms_norm_eps": 1e-05,
            "torch_dtype": "float16", "vocab_size": 32064},
        "tie_word_embeddings": false, "torch_dtype": "float16", "transformers_version": "4.36.0.dev0",
        "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
            "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
            "patch_size": 14, "projection_dim": 768, "vocab_size": 32000},
        "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "vocab_size": 32064
    });
    let t = LlavaConfig::from_value(&c).unwrap().text;
    assert_eq!((t.vocab_size, t.hidden_size, t.intermediate_size), (32064, 4096, 11008));
    assert_eq!((t.num_hidden_layers, t.n_heads(), t.n_kv_heads(), t.head_dim()), (32, 32, 32, 128));
    assert_eq!((t.max_position_embeddings, t.rms_norm_eps, t.rope_theta), (4096, 1e-5, 10000.0));
    assert!(!t.tie_word_embeddings);
    // `llava-hf/llava-v1.6-mistral-7b-hf`'s text_config: an explicit `sliding_window: null` stays off.
    let n = crate::model::LlamaConfig::from_value(&json!({"model_type": "mistral", "intermediate_size": 14336,
        "max_position_embeddings": 32768, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1e6,
        "sliding_window": null, "vocab_size": 32064}))
    .unwrap();
    assert_eq!((n.hidden_size, n.num_hidden_layers, n.n_heads(), n.sliding_window), (4096, 32, 32, None));
    // Mistral and Gemma fill from their own classes.
    let m = crate::model::LlamaConfig::from_value(&json!({"model_type": "mistral"})).unwrap();
    assert_eq!((m.intermediate_size, m.n_kv_heads(), m.sliding_window), (14336, 8, Some(4096)));
    let g = crate::model::LlamaConfig::from_value(&json!({"model_type": "gemma", "num_hidden_layers": 18})).unwrap();
    assert_eq!((g.vocab_size, g.head_dim(), g.num_hidden_layers, g.tie_word_embeddings), (256000, 256, 18, true));
}
