//! HF folder reading and `convert`: a tiny sharded Llama-shaped checkpoint goes through
//! `convert` at f32 (tensors come back bit-identical), f16, int8 and int4 (within the
//! quantization error), with shard limits, fallbacks and output-folder rules checked.

use crate::io_common;

use io_common::*;
use std::collections::BTreeMap;
use std::path::Path;
use webvlm::convert::{convert, ConvertOptions, ConvertReport, WeightChoice};
use webvlm::io::safetensors::Header;
use webvlm::io::{Checkpoint, TensorData};
use webvlm::quant::{QData, WeightFormat};

fn run(src: &Path, out: &Path, opts: &ConvertOptions) -> webvlm::Result<ConvertReport> {
    let mut seen = 0;
    let r = convert(src, out, opts, &mut |p| {
        seen += 1;
        assert_eq!((p.done, p.total), (seen, tiny_tensors().len()));
    });
    if r.is_ok() {
        assert_eq!(seen, tiny_tensors().len());
    }
    r
}

fn opts(weights: WeightChoice) -> ConvertOptions {
    ConvertOptions { weights, ..ConvertOptions::default() }
}

fn hf_dir(name: &str) -> (std::path::PathBuf, Expected) {
    let dir = scratch(name);
    let expect = write_tiny_hf(&dir, 7);
    (dir, expect)
}

#[test]
fn hf_folder_reads_config_tokenizer_and_sharded_weights() {
    let (dir, expect) = hf_dir("hf-read");
    let ck = webvlm::io::open(&dir).unwrap();
    assert_eq!(ck.config, config_json());
    let t = &ck.tokenizer;
    assert_eq!((t.bos_token.as_deref(), t.bos_id), (Some("<s>"), Some(13)));
    assert_eq!((t.eos_token.as_deref(), &t.eos_ids), (Some("</s>"), &vec![14, 15]));
    assert!(t.add_bos);
    assert_eq!(t.chat_template.as_deref(), Some(CHAT_TEMPLATE));
    assert_eq!(t.json, TOKENIZER_JSON);
    // The hand-written tokenizer.json is a real one.
    let tk = tokenizers::Tokenizer::from_bytes(t.json.as_bytes()).unwrap();
    assert_eq!(tk.encode(" abc de", false).unwrap().get_ids(), &[8, 12]);
    let names: Vec<String> = expect.keys().cloned().collect();
    assert_eq!(ck.weights.names(), names);
    for (name, (shape, vals)) in &expect {
        assert_eq!(&ck.weights.shape(name).unwrap(), shape);
        let got = ck.weights.load(name).unwrap();
        assert_eq!(&got.shape, shape);
        assert_eq!(&got.into_f32(), vals, "{name}");
    }
    assert!(ck.weights.load("nope").unwrap_err().to_string().contains("nope"));
}

#[test]
fn hf_folder_errors_are_clear() {
    let (dir, _) = hf_dir("hf-errors");
    // weight_map pointing a tensor at the wrong file
    let idx_path = dir.join("model.safetensors.index.json");
    let mut idx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&idx_path).unwrap()).unwrap();
    idx["weight_map"]["lm_head.weight"] = "model-00002-of-00002.safetensors".into();
    write_json(&idx_path, &idx);
    let e = webvlm::io::open(&dir).err().unwrap().to_string();
    assert!(e.contains("lm_head.weight") && e.contains("index.json"), "{e}");
    // an eos token the tokenizer does not know
    let (dir, _) = hf_dir("hf-errors2");
    write_json(&dir.join("tokenizer_config.json"), &serde_json::json!({"eos_token": "<nope>"}));
    let e = webvlm::io::open(&dir).err().unwrap().to_string();
    assert!(e.contains("<nope>") && e.contains("tokenizer_config.json"), "{e}");
    // a missing shard file
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    write_json(&dir.join("tokenizer_config.json"), &serde_json::json!({}));
    let e = webvlm::io::open(&dir).err().unwrap().to_string();
    assert!(e.contains("model-00002-of-00002.safetensors"), "{e}");
}

/// Every shard is a valid, contiguous safetensors file and every segment 16-byte aligned.
fn check_shards(out: &Path) -> serde_json::Value {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    for s in m["shards"].as_array().unwrap() {
        let bytes = std::fs::read(out.join(s["file"].as_str().unwrap())).unwrap();
        assert_eq!(bytes.len() as u64, s["size"].as_u64().unwrap());
        let h = Header::parse("shard", &bytes).unwrap();
        let mut pos = 0;
        for t in &h.tensors {
            assert_eq!(t.begin, pos);
            pos = t.end;
        }
        assert_eq!(h.data_start + pos, bytes.len());
    }
    for t in m["tensors"].as_array().unwrap() {
        for seg in t["segments"].as_object().unwrap().values() {
            assert_eq!(seg["offset"].as_u64().unwrap() % 16, 0);
        }
    }
    m
}

fn reopen(out: &Path) -> Checkpoint {
    webvlm::io::open(out).unwrap()
}

#[test]
fn f32_conversion_is_lossless() {
    let (dir, expect) = hf_dir("conv-f32-src");
    let out = scratch("conv-f32-out");
    let r = run(&dir, &out, &opts(WeightChoice::F32)).unwrap();
    assert_eq!(r.tensors, expect.len());
    assert_eq!(r.formats, BTreeMap::from([("f32".to_string(), expect.len())]));
    assert!(r.warnings.is_empty());
    let m = check_shards(&out);
    assert_eq!(m["format"], "webvlm");
    assert_eq!(m["model_type"], "llama");
    assert_eq!(m["config"], config_json());
    assert_eq!(m["tokenizer"]["file"], "tokenizer.json");
    assert_eq!(m["tokenizer"]["eos_ids"], serde_json::json!([14, 15]));
    let ck = reopen(&out);
    assert_eq!(ck.tokenizer.json, TOKENIZER_JSON);
    assert_eq!(ck.tokenizer.bos_id, Some(13));
    assert_eq!(ck.tokenizer.chat_template.as_deref(), Some(CHAT_TEMPLATE));
    assert_eq!(ck.config, config_json());
    assert_eq!(ck.weights.names(), expect.keys().cloned().collect::<Vec<_>>());
    for (name, (shape, vals)) in &expect {
        let t = ck.weights.load(name).unwrap();
        assert_eq!(&t.shape, shape);
        match t.data {
            TensorData::F32(v) => assert_eq!(&v, vals, "{name}"),
            TensorData::Quant(_) => panic!("{name}: f32 conversion gave a quantized tensor"),
        }
    }
    // A converted folder converts again (here to f16).
    let out2 = scratch("conv-f32-again");
    let r2 = convert(&out, &out2, &opts(WeightChoice::F16), &mut |_| {}).unwrap();
    assert_eq!(r2.tensors, expect.len());
}

#[test]
fn f16_conversion_keeps_norms_f32() {
    let (dir, expect) = hf_dir("conv-f16-src");
    let out = scratch("conv-f16-out");
    let r = run(&dir, &out, &opts(WeightChoice::F16)).unwrap();
    check_shards(&out);
    let ck = reopen(&out);
    let mut n16 = 0;
    for (name, (shape, vals)) in &expect {
        let t = ck.weights.load(name).unwrap();
        match (&t.data, shape.len()) {
            (TensorData::Quant(q), 2) => {
                assert_eq!(q.format(), WeightFormat::F16);
                assert_eq!((q.rows, q.cols), (shape[0], shape[1]));
                n16 += 1;
                let want: Vec<f32> = vals.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
                assert_eq!(q.dequantize(), want, "{name}");
            }
            (TensorData::F32(v), 1) => assert_eq!(v, vals, "{name}"),
            _ => panic!("{name}: unexpected storage"),
        }
    }
    assert_eq!(r.formats["f16"], n16);
    assert_eq!(r.formats["f32"], expect.len() - n16);
}

/// Largest error allowed per group: half a quantization step (a whole step for the clamped
/// end of symmetric INT4), with slack for the f16 rounding of scales and mins.
fn max_err(fmt: WeightFormat, group_vals: &[f32], row_vals: &[f32]) -> f32 {
    let amax = |v: &[f32]| v.iter().fold(0f32, |a, x| a.max(x.abs()));
    match fmt {
        WeightFormat::Int8 => amax(row_vals) / 127.0 * 0.5 + 1e-6,
        // Q4_0 rule (s = signed max / -8): the opposite extreme clamps to 7s, off by s.
        WeightFormat::Int4 { sym: true, .. } => amax(group_vals) / 8.0 * 1.01 + 1e-6,
        WeightFormat::Int4 { sym: false, .. } => {
            let (lo, hi) = group_vals.iter().fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
            (hi - lo) / 15.0 * 0.5 + 2e-3 * amax(group_vals) + 1e-6
        }
        _ => 0.0,
    }
}

fn check_quantized(choice: WeightChoice, sym: bool, name: &str) {
    let (dir, expect) = hf_dir(&format!("{name}-src"));
    let out = scratch(&format!("{name}-out"));
    let o = ConvertOptions { sym, ..opts(choice) };
    let r = run(&dir, &out, &o).unwrap();
    check_shards(&out);
    let ck = reopen(&out);
    for (tname, (shape, vals)) in &expect {
        let t = ck.weights.load(tname).unwrap();
        let q = match (t.data, shape.len()) {
            (TensorData::Quant(q), 2) => q,
            (TensorData::F32(v), 1) => {
                assert_eq!(&v, vals);
                continue;
            }
            _ => panic!("{tname}: unexpected storage"),
        };
        let fmt = q.format();
        let group = match (&q.data, choice) {
            (QData::Int4 { group, mins, .. }, WeightChoice::Int4) => {
                assert_eq!(mins.is_none(), sym);
                *group
            }
            (QData::Int8 { .. }, _) => shape[1],
            _ => panic!("{tname}: format {}", fmt.name()),
        };
        let deq = q.dequantize();
        let cols = shape[1];
        for (row, (w, d)) in vals.chunks(cols).zip(deq.chunks(cols)).enumerate() {
            for (g, (wg, dg)) in w.chunks(group).zip(d.chunks(group)).enumerate() {
                let tol = max_err(fmt, wg, w);
                let err = wg.iter().zip(dg).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
                assert!(err <= tol, "{tname} row {row} group {g}: error {err} > {tol}");
            }
        }
    }
    if choice == WeightChoice::Int4 {
        // [8, 96]: group 64 does not divide 96 → 32; [3, 20]: no group divides 20 → int8.
        let w = r.warnings.join("\n");
        assert!(w.contains("model.extra_proj.weight") && w.contains("group 32"), "{w}");
        assert!(w.contains("model.odd_proj.weight") && w.contains("int8"), "{w}");
        assert_eq!(r.formats["int8"], 1);
        let g = format!("int4_{}_g", if sym { "sym" } else { "asym" });
        assert_eq!(r.formats[&format!("{g}32")], 1);
        assert_eq!(r.formats[&format!("{g}64")], 2 + LAYERS * 7);
    }
}

#[test]
fn int8_conversion_within_error() {
    check_quantized(WeightChoice::Int8, true, "conv-int8");
}

#[test]
fn int4_sym_conversion_within_error() {
    check_quantized(WeightChoice::Int4, true, "conv-int4s");
}

#[test]
fn int4_asym_conversion_within_error() {
    check_quantized(WeightChoice::Int4, false, "conv-int4a");
}

#[test]
fn shard_limit_is_respected() {
    let (dir, expect) = hf_dir("conv-shards-src");
    let out = scratch("conv-shards-out");
    let limit = 40_000; // gate/up at f32 are 32 KiB each, so most shards hold one or two tensors
    let o = ConvertOptions { shard_bytes: limit, ..opts(WeightChoice::F32) };
    let r = run(&dir, &out, &o).unwrap();
    let m = check_shards(&out);
    let shards = m["shards"].as_array().unwrap();
    assert_eq!(r.shards, shards.len());
    assert!(shards.len() > 3, "{} shards", shards.len());
    let mut per_shard = vec![0; shards.len()];
    for t in m["tensors"].as_array().unwrap() {
        let segs: Vec<u64> =
            t["segments"].as_object().unwrap().values().map(|s| s["shard"].as_u64().unwrap()).collect();
        per_shard[segs[0] as usize] += 1;
    }
    for (s, n) in shards.iter().zip(&per_shard) {
        let size = s["size"].as_u64().unwrap();
        assert!(size <= limit as u64 || *n == 1, "{} is {size} bytes with {n} tensors", s["file"]);
    }
    assert_eq!(r.bytes, shards.iter().map(|s| s["size"].as_u64().unwrap()).sum::<u64>());
    // Values survive sharding.
    let ck = reopen(&out);
    for (name, (_, vals)) in &expect {
        assert_eq!(&ck.weights.load(name).unwrap().into_f32(), vals);
    }
    // A limit smaller than any tensor: one tensor per shard.
    let out = scratch("conv-shards-tiny");
    let o = ConvertOptions { shard_bytes: 1, ..opts(WeightChoice::F32) };
    let r = run(&dir, &out, &o).unwrap();
    assert_eq!(r.shards, expect.len());
}

#[test]
fn output_folder_rules() {
    let (dir, _) = hf_dir("conv-out-src");
    let out = scratch("conv-out");
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let e = run(&dir, &out, &opts(WeightChoice::F32)).unwrap_err().to_string();
    assert!(e.contains("not empty") && e.contains("--force"), "{e}");
    assert!(!out.join("manifest.json").exists());
    let small = ConvertOptions { shard_bytes: 1, ..opts(WeightChoice::F32) };
    run(&dir, &out, &ConvertOptions { force: true, ..small }).unwrap();
    // Re-converting with --force replaces the old shards instead of leaving stale ones.
    let r = run(&dir, &out, &ConvertOptions { force: true, ..opts(WeightChoice::F32) }).unwrap();
    let shard_files = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".safetensors"))
        .count();
    assert_eq!(shard_files, r.shards);
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
    // Converting a folder into itself is refused even with --force.
    let e = run(&out, &out, &ConvertOptions { force: true, ..opts(WeightChoice::F32) }).unwrap_err();
    assert!(e.to_string().contains("source"), "{e}");
    // Bad options.
    let e = run(&dir, &scratch("conv-bad-group"), &ConvertOptions { group_size: 48, ..opts(WeightChoice::Int4) });
    assert!(e.unwrap_err().to_string().contains("48"));
    assert!("int3".parse::<WeightChoice>().is_err());
    assert_eq!("int4".parse::<WeightChoice>().unwrap(), WeightChoice::Int4);
}

#[test]
fn hf_tokenizer_config_variants() {
    use webvlm::io::hf::{tokenizer_spec, TokenizerFiles};
    // Llama-3 style: no add_bos_token, but the post-processor template starts with BOS;
    // template given as a named list; generation_config eos as a single int.
    let mut tok: serde_json::Value = serde_json::from_str(TOKENIZER_JSON).unwrap();
    tok["post_processor"] = serde_json::json!({"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [], "special_tokens": {}}]});
    let files = TokenizerFiles {
        tokenizer_json: tok.to_string(),
        tokenizer_config: Some(serde_json::json!({
            "bos_token": {"content": "<s>"}, "eos_token": "<|im_end|>",
            "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]
        })),
        generation_config: Some(serde_json::json!({"eos_token_id": 14})),
        ..TokenizerFiles::default()
    };
    let s = tokenizer_spec(files).unwrap();
    assert!(s.add_bos);
    assert_eq!((s.bos_id, s.eos_ids.clone()), (Some(13), vec![15, 14]));
    assert_eq!(s.chat_template.as_deref(), Some("D"));
    // Template only in chat_template.jinja / chat_template.json; vocab-only token; no BOS policy.
    let files = TokenizerFiles {
        tokenizer_json: TOKENIZER_JSON.to_string(),
        tokenizer_config: Some(serde_json::json!({"bos_token": "ab", "eos_token": null})),
        chat_template_jinja: Some("J".into()),
        chat_template_json: Some(serde_json::json!({"chat_template": "K"})),
        ..TokenizerFiles::default()
    };
    let s = tokenizer_spec(files).unwrap();
    assert_eq!((s.bos_id, s.add_bos, s.eos_ids.is_empty()), (Some(4), false, true));
    assert_eq!(s.chat_template.as_deref(), Some("J"));
    let files = TokenizerFiles {
        tokenizer_json: TOKENIZER_JSON.to_string(),
        chat_template_json: Some(serde_json::json!({"chat_template": "K"})),
        generation_config: Some(serde_json::json!({"eos_token_id": [-1]})),
        ..TokenizerFiles::default()
    };
    assert!(tokenizer_spec(files).unwrap_err().to_string().contains("generation_config.json"));
    let bad = TokenizerFiles { tokenizer_json: "{".into(), ..TokenizerFiles::default() };
    assert!(tokenizer_spec(bad).unwrap_err().to_string().contains("tokenizer.json"));
}

/// The real SmolLM2-135M GGUF (when the shared model cache has it) → INT4 shards, reopened
/// through the browser's `ManifestLoader`; spot-checked against the GGUF's own values.
#[test]
fn smollm2_gguf_to_int4() {
    let gguf = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        gguf.exists(),
        "{} not found: run `npm test` or `bash scripts/setup.sh` first (it fetches the model)",
        gguf.display()
    );
    let out = scratch("smollm2-int4");
    let r = convert(&gguf, &out, &ConvertOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(r.tensors, 272);
    assert_eq!(r.formats["int4_sym_g64"], 211);
    assert_eq!(r.formats["f32"], 61);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let m = check_shards(&out);
    for s in m["shards"].as_array().unwrap() {
        assert!(s["size"].as_u64().unwrap() <= 64 << 20);
    }
    let src = webvlm::io::open(&gguf).unwrap();
    let mut l = webvlm::io::manifest::ManifestLoader::new(&std::fs::read_to_string(out.join("manifest.json")).unwrap())
        .unwrap();
    for i in 0..l.manifest().shards.len() {
        let bytes = std::fs::read(out.join(&l.manifest().shards[i].file)).unwrap();
        l.add_shard(i, &bytes).unwrap();
    }
    let ck = l.finish(std::fs::read_to_string(out.join("tokenizer.json")).unwrap()).unwrap();
    assert_eq!(ck.config, src.config);
    assert_eq!(ck.tokenizer.eos_ids, src.tokenizer.eos_ids);
    assert_eq!(ck.tokenizer.json, src.tokenizer.json);
    assert_eq!(ck.weights.names(), src.weights.names());
    for name in [
        "model.embed_tokens.weight",
        "model.layers.7.self_attn.k_proj.weight",
        "model.layers.29.mlp.down_proj.weight",
        "model.norm.weight",
    ] {
        let want = src.weights.load(name).unwrap().into_f32();
        let got = ck.weights.load(name).unwrap();
        let shape = got.shape.clone();
        let got = got.into_f32();
        if shape.len() == 1 {
            assert_eq!(got, want, "{name}");
            continue;
        }
        let fmt = WeightFormat::Int4 { group: 64, sym: true };
        for (i, (w, d)) in want.chunks(64).zip(got.chunks(64)).enumerate() {
            let err = w.iter().zip(d).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
            assert!(err <= max_err(fmt, w, w), "{name} group {i}: error {err}");
        }
    }
}

/// `--weights ternary` on a Llama model (not trained ternary) converts its block linears
/// ternary and says, once, that quality will be poor.
#[test]
fn ternary_on_a_llama_model_warns() {
    let (src, _) = hf_dir("conv-ternary-src");
    let out = scratch("conv-ternary-out");
    let r = run(&src, &out, &ConvertOptions { force: true, ..opts(WeightChoice::Ternary) }).unwrap();
    assert!(r.formats.contains_key("ternary"), "{:?}", r.formats);
    let warned: Vec<_> = r.warnings.iter().filter(|w| w.contains("not trained ternary")).collect();
    assert_eq!(warned.len(), 1, "{:?}", r.warnings);
}
