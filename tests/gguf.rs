//! GGUF reader tests. Fixtures come from `tests/fixtures/make_gguf_fixtures.py`, which writes
//! them with llama.cpp's reference Python package (gguf-py 0.19): `quants.gguf` pairs each
//! quantized tensor with gguf-py's dequantization of it, `tiny-llama.gguf` pairs permuted
//! Q/K weights with their HF-layout originals.

use std::path::{Path, PathBuf};
use webvlm::io::gguf::reader::{self, GgmlType, MetaValue};
use webvlm::io::gguf::{dequant, open_file};
use webvlm::model::config::LlamaConfig;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf").join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e} (run make_gguf_fixtures.py)"))
}

fn tensor_f32(buf: &[u8], h: &reader::GgufHeader, name: &str) -> Vec<f32> {
    let t = h.tensor(name).unwrap_or_else(|| panic!("no tensor {name}"));
    let data = &buf[t.offset as usize..(t.offset + t.nbytes) as usize];
    dequant::dequantize(t.ty, data, t.numel() as usize).unwrap()
}

#[test]
fn dequantize_matches_gguf_py() {
    let buf = read("quants.gguf");
    let h = reader::parse(&buf, "quants.gguf").unwrap();
    let types = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"];
    for ty in types {
        let q = h.tensor(&format!("q.{ty}")).unwrap();
        assert_eq!(q.ty.name(), ty);
        assert_eq!(q.hf_shape(), vec![2, 512]);
        let got = tensor_f32(&buf, &h, &format!("q.{ty}"));
        let want = tensor_f32(&buf, &h, &format!("ref.{ty}"));
        assert_eq!(got.len(), want.len());
        assert!(want.iter().any(|v| *v != 0.0), "{ty}: reference is all zeros");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // Same f32 operations in the same order as gguf-py: results agree exactly.
            assert!(g == w, "{ty}[{i}]: got {g}, gguf-py {w}");
        }
    }
}

#[test]
fn metadata_values_and_alignment() {
    let buf = read("quants.gguf");
    let h = reader::parse(&buf, "quants.gguf").unwrap();
    assert_eq!(h.version, 3);
    assert_eq!(h.alignment, 64);
    assert_eq!(h.data_offset % 64, 0);
    assert!(h.tensors.iter().all(|t| (t.offset - h.data_offset).is_multiple_of(64)));
    let m = |k: &str| h.get(k).unwrap_or_else(|| panic!("missing {k}")).clone();
    assert_eq!(m("test.u8"), MetaValue::U8(200));
    assert_eq!(m("test.i8"), MetaValue::I8(-100));
    assert_eq!(m("test.u16"), MetaValue::U16(60000));
    assert_eq!(m("test.i16"), MetaValue::I16(-30000));
    assert_eq!(m("test.u32"), MetaValue::U32(4_000_000_000));
    assert_eq!(m("test.i32"), MetaValue::I32(-2_000_000_000));
    assert_eq!(m("test.f32"), MetaValue::F32(0.125));
    assert_eq!(m("test.bool"), MetaValue::Bool(true));
    assert_eq!(m("test.string").as_str(), Some("héllo ✓"));
    assert_eq!(m("test.u64"), MetaValue::U64((1u64 << 63) + 5));
    assert_eq!(m("test.u64").as_i64(), None);
    assert_eq!(m("test.i64"), MetaValue::I64(-(1i64 << 62)));
    assert_eq!(m("test.f64"), MetaValue::F64(2.5e-300));
    let ints: Vec<i64> = m("test.array_i32").as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(ints, vec![1, -2, 3]);
    let strs: Vec<&str> =
        h.get("test.array_str").unwrap().as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(strs, vec!["a", "", "ü"]);
    let nested = m("test.array_nested");
    let nested = nested.as_array().unwrap();
    assert_eq!(nested.len(), 2);
    assert_eq!(nested[0], MetaValue::Array(vec![MetaValue::I32(1), MetaValue::I32(2)]));
    assert_eq!(h.get("general.architecture").and_then(|v| v.as_str()), Some("test"));
}

/// A hand-built GGUF: `kvs` are raw key/value records, `tensors` raw tensor-info records.
fn mini(n_tensors: u64, n_kv: u64, kvs: &[u8], tensors: &[u8], data: usize) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend(n_kv.to_le_bytes());
    b.extend(kvs);
    b.extend(tensors);
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    b.extend(vec![0u8; data]);
    b
}

fn gstr(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend(s.as_bytes());
    v
}

fn tinfo(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut v = gstr(name);
    v.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        v.extend(d.to_le_bytes());
    }
    v.extend(ty.to_le_bytes());
    v.extend(offset.to_le_bytes());
    v
}

fn parse_err(buf: &[u8]) -> String {
    match reader::parse(buf, "bad.gguf") {
        Ok(_) => panic!("hostile input parsed"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("bad.gguf"), "error does not name the file: {msg}");
            msg
        }
    }
}

#[test]
fn hand_built_file_parses() {
    let buf = mini(1, 0, &[], &tinfo("w", &[32, 2], 8, 0), 68);
    let h = reader::parse(&buf, "ok.gguf").unwrap();
    assert_eq!(h.tensors[0].ty, GgmlType::Q8_0);
    assert_eq!(h.tensors[0].nbytes, 68);
    assert_eq!(h.tensors[0].hf_shape(), vec![2, 32]);
}

#[test]
fn hostile_inputs_give_errors() {
    let good = mini(1, 0, &[], &tinfo("w", &[32, 2], 8, 0), 68);
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(parse_err(&bad_magic).contains("magic"));
    let mut bad_version = good.clone();
    bad_version[4] = 9;
    assert!(parse_err(&bad_version).contains("version"));
    assert!(parse_err(&mini(1, 0, &[], &tinfo("w", &[32, 2], 99, 0), 68)).contains("type id 99"));
    assert!(parse_err(&mini(1, 0, &[], &tinfo("w", &[32, 2], 8, 32), 68)).contains("past the end"));
    assert!(parse_err(&mini(1, 0, &[], &tinfo("w", &[32, 2], 8, 3), 68)).contains("aligned"));
    assert!(parse_err(&mini(1, 0, &[], &tinfo("w", &[30, 2], 8, 0), 68)).contains("block size"));
    assert!(parse_err(&mini(1, 0, &[], &tinfo("w", &[1, 1, 1, 1, 1], 0, 0), 4)).contains("dimensions"));
    assert!(parse_err(&mini(1, 0, &[], &tinfo("w", &[u64::MAX, u64::MAX], 0, 0), 4)).contains("overflow"));
    let two = [tinfo("w", &[32], 0, 0), tinfo("w", &[32], 0, 128)].concat();
    assert!(parse_err(&mini(2, 0, &[], &two, 256)).contains("duplicate tensor"));
    // Counts that cannot fit the file are refused before any allocation.
    assert!(parse_err(&mini(u64::MAX, 0, &[], &[], 0)).contains("count"));
    assert!(parse_err(&mini(0, 1 << 60, &[], &[], 0)).contains("count"));
    let mut kv = gstr("k");
    kv.extend(42u32.to_le_bytes());
    kv.push(0);
    assert!(parse_err(&mini(0, 1, &kv, &[], 0)).contains("unknown value type 42"));
    let mut arr = gstr("k");
    arr.extend(9u32.to_le_bytes());
    arr.extend(8u32.to_le_bytes());
    arr.extend(u64::MAX.to_le_bytes());
    assert!(parse_err(&mini(0, 1, &arr, &[], 0)).contains("count"));
    let mut long = gstr("k");
    long.extend(8u32.to_le_bytes());
    long.extend((1u64 << 40).to_le_bytes());
    assert!(parse_err(&mini(0, 1, &long, &[], 0)).contains("count"));
    let mut align = gstr("general.alignment");
    align.extend(4u32.to_le_bytes());
    align.extend(48u32.to_le_bytes());
    assert!(parse_err(&mini(0, 1, &align, &[], 0)).contains("alignment"));
}

#[test]
fn every_truncation_is_an_error() {
    let buf = read("quants.gguf");
    let h = reader::parse(&buf, "quants.gguf").unwrap();
    let last = h.tensors.iter().map(|t| t.offset + t.nbytes).max().unwrap() as usize;
    // Every cut inside the header, and cuts through the tensor data.
    let cuts = (0..h.data_offset as usize).chain((h.data_offset as usize..last).step_by(97));
    for cut in cuts {
        parse_err(&buf[..cut]);
    }
}

#[test]
fn tiny_llama_checkpoint() {
    let ck = open_file(&fixture("tiny-llama.gguf")).unwrap();
    let cfg = LlamaConfig::from_value(&ck.config).unwrap();
    assert_eq!((cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size), (269, 32, 48));
    assert_eq!((cfg.num_hidden_layers, cfg.n_heads(), cfg.n_kv_heads(), cfg.head_dim()), (2, 4, 2, 8));
    assert_eq!((cfg.rms_norm_eps, cfg.rope_theta, cfg.max_position_embeddings), (1e-5, 1e5, 256));
    assert!(cfg.tie_word_embeddings);
    let rs = cfg.rope_scaling.expect("rope_scaling");
    assert_eq!((rs.rope_type.as_str(), rs.factor), ("linear", 2.0));

    let names = ck.weights.names();
    assert_eq!(names.len(), 2 + 2 * 9, "{names:?}");
    assert!(names.windows(2).all(|w| w[0] < w[1]));
    assert!(!names.iter().any(|n| n.contains("rope_freqs") || n.starts_with("ref.") || n == "lm_head.weight"));
    assert_eq!(ck.weights.shape("model.embed_tokens.weight").unwrap(), vec![269, 32]);
    assert_eq!(ck.weights.shape("model.layers.1.mlp.down_proj.weight").unwrap(), vec![32, 48]);
    assert_eq!(ck.weights.shape("model.layers.1.self_attn.k_proj.weight").unwrap(), vec![16, 32]);
    assert_eq!(ck.weights.shape("model.norm.weight").unwrap(), vec![32]);
    assert!(matches!(ck.weights.load("lm_head.weight"), Err(webvlm::Error::MissingTensor(_))));

    let buf = read("tiny-llama.gguf");
    let h = reader::parse(&buf, "tiny-llama.gguf").unwrap();
    for layer in 0..2 {
        for (hf, refname) in [("q_proj", "q_proj"), ("k_proj", "k_proj")] {
            let got = ck.weights.load(&format!("model.layers.{layer}.self_attn.{hf}.weight")).unwrap();
            let want = tensor_f32(&buf, &h, &format!("ref.{layer}.{refname}"));
            assert_eq!(got.into_f32(), want, "layer {layer} {hf}: un-permuted rows differ from HF layout");
        }
        let v = ck.weights.load(&format!("model.layers.{layer}.self_attn.v_proj.weight")).unwrap();
        assert_eq!(v.shape, vec![16, 32]);
        assert_eq!(v.into_f32(), tensor_f32(&buf, &h, &format!("blk.{layer}.attn_v.weight")));
    }
}

#[test]
fn not_a_gguf_file_is_an_error() {
    let err = open_file(&fixture("smollm2_ref.json")).err().expect("json opened as gguf").to_string();
    assert!(err.contains("smollm2_ref.json") && err.contains("magic"), "{err}");
    let err = open_file(&fixture("quants.gguf")).err().expect("arch `test` accepted").to_string();
    assert!(err.contains("architecture `test`"), "{err}");
}

fn smollm2() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        p
    } else {
        panic!("{} not found: run `npm test` or `bash scripts/setup.sh` first (it fetches the model)", p.display());
    }
}

#[test]
fn smollm2_config_and_types() {
    let path = smollm2();
    let ck = open_file(&path).unwrap();
    let c = LlamaConfig::from_value(&ck.config).unwrap();
    assert_eq!((c.num_hidden_layers, c.hidden_size, c.n_heads(), c.n_kv_heads()), (30, 576, 9, 3));
    assert_eq!((c.intermediate_size, c.vocab_size, c.rope_theta), (1536, 49152, 1e5));
    assert!(c.tie_word_embeddings);
    assert_eq!(c.max_position_embeddings, 8192);
    let buf = std::fs::read(&path).unwrap();
    let h = reader::parse(&buf, "smollm2").unwrap();
    let count = |t: GgmlType| h.tensors.iter().filter(|x| x.ty == t).count();
    assert_eq!((count(GgmlType::Q4_1), count(GgmlType::Q8_0), count(GgmlType::F32)), (210, 1, 61));
    assert_eq!(ck.weights.names().len(), 272);
}

#[test]
fn smollm2_tensors_match_reference() {
    let path = smollm2();
    let ck = open_file(&path).unwrap();
    let refs: serde_json::Value = serde_json::from_slice(&read("smollm2_ref.json")).unwrap();
    for (name, r) in refs.as_object().unwrap() {
        let t = ck.weights.load(name).unwrap();
        let shape: Vec<usize> = serde_json::from_value(r["shape"].clone()).unwrap();
        assert_eq!(t.shape, shape, "{name}");
        let cols = shape[1];
        let v = t.into_f32();
        for (row, want) in r["rows"].as_object().unwrap() {
            let row: usize = row.parse().unwrap();
            let want: Vec<f32> = serde_json::from_value(want.clone()).unwrap();
            assert_eq!(&v[row * cols..(row + 1) * cols], &want[..], "{name} row {row}");
        }
        let sum: f64 = v.iter().map(|&x| x as f64).sum();
        let abs: f64 = v.iter().map(|&x| (x as f64).abs()).sum();
        let (ws, wa) = (r["sum"].as_f64().unwrap(), r["abs_sum"].as_f64().unwrap());
        assert!(
            (sum - ws).abs() <= 1e-9 * wa && (abs - wa).abs() <= 1e-9 * wa,
            "{name}: sums {sum} {abs} vs {ws} {wa}"
        );
    }
}

/// Dense values of an INT4 [`QTensor`], unpacked by the layout `quant/mod.rs` documents
/// (word `k` holds weights `8k..8k+7`, weight `8k+i` in bits `4i..4i+3`; row-major groups).
fn unpack_int4(q: &webvlm::quant::QTensor) -> Vec<f32> {
    let webvlm::quant::QData::Int4 { group, q: words, scales, mins } = &q.data else {
        panic!("not int4: {:?}", q.format())
    };
    (0..q.rows * q.cols)
        .map(|e| {
            let nib = (words[e / 8] >> (4 * (e % 8))) & 0xF;
            let s = scales[e / group].to_f32();
            match mins {
                None => (nib as i32 - 8) as f32 * s,
                Some(m) => nib as f32 * s + m[e / group].to_f32(),
            }
        })
        .collect()
}

#[test]
fn q4_blocks_repack_losslessly_to_int4() {
    let buf = read("quants.gguf");
    let h = reader::parse(&buf, "quants.gguf").unwrap();
    for (ty, sym) in [("Q4_0", true), ("Q4_1", false)] {
        let t = h.tensor(&format!("q.{ty}")).unwrap();
        let data = &buf[t.offset as usize..(t.offset + t.nbytes) as usize];
        let q = webvlm::io::gguf::native::to_qtensor(t.ty, data, 2, 512).unwrap();
        assert_eq!(q.format(), webvlm::quant::WeightFormat::Int4 { group: 32, sym });
        assert_eq!(unpack_int4(&q), tensor_f32(&buf, &h, &format!("ref.{ty}")), "{ty}");
    }
    let t = h.tensor("q.Q8_0").unwrap();
    let data = &buf[t.offset as usize..(t.offset + t.nbytes) as usize];
    assert!(webvlm::io::gguf::native::to_qtensor(t.ty, data, 2, 512).is_none());
}

#[test]
fn smollm2_native_int4_matches_f32_load() {
    let path = smollm2();
    let f32s = open_file(&path).unwrap();
    let opts = webvlm::io::gguf::OpenOptions { native_int4: true };
    let native = webvlm::io::gguf::open_file_with(&path, opts).unwrap();
    for name in [
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.5.self_attn.k_proj.weight",
        "model.layers.2.mlp.up_proj.weight",
    ] {
        let n = native.weights.load(name).unwrap();
        let webvlm::io::TensorData::Quant(q) = &n.data else { panic!("{name}: not repacked") };
        assert_eq!((q.rows, q.cols), (n.shape[0], n.shape[1]));
        assert_eq!(unpack_int4(q), f32s.weights.load(name).unwrap().into_f32(), "{name}");
    }
    // Q8_0 embeddings and f32 norms still come as f32.
    let emb = native.weights.load("model.embed_tokens.weight").unwrap();
    assert!(matches!(emb.data, webvlm::io::TensorData::F32(_)));
}

fn kv_str(key: &str, val: &str) -> Vec<u8> {
    let mut v = gstr(key);
    v.extend(8u32.to_le_bytes());
    v.extend(gstr(val));
    v
}

#[test]
fn incomplete_metadata_is_an_error() {
    use webvlm::io::gguf::{open_bytes, OpenOptions};
    let open = |kvs: &[Vec<u8>]| {
        let buf = mini(0, kvs.len() as u64, &kvs.concat(), &[], 0);
        match open_bytes(std::sync::Arc::new(buf), "meta.gguf", OpenOptions::default()) {
            Ok(_) => panic!("incomplete metadata accepted"),
            Err(e) => e.to_string(),
        }
    };
    let e = open(&[]);
    assert!(e.contains("meta.gguf") && e.contains("general.architecture"), "{e}");
    let arch = kv_str("general.architecture", "llama");
    let e = open(std::slice::from_ref(&arch));
    assert!(e.contains("meta.gguf") && e.contains("vocab"), "{e}");
    let mut vocab = gstr("llama.vocab_size");
    vocab.extend(4u32.to_le_bytes());
    vocab.extend(10u32.to_le_bytes());
    let e = open(&[arch.clone(), vocab.clone()]);
    assert!(e.contains("llama.embedding_length"), "{e}");
    let e = open(&[kv_str("general.architecture", "gptj")]);
    assert!(e.contains("architecture `gptj`"), "{e}");
}
