//! The converted format's two readers: native `open_dir` and the browser's `ManifestLoader`
//! give the same checkpoint; wrong hashes, missing or truncated shards, a changed tokenizer and
//! inconsistent manifests are rejected with errors naming the file or tensor.

use crate::io_common;

use io_common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use webvlm::convert::{convert, ConvertOptions, WeightChoice};
use webvlm::io::manifest::{open_dir, ManifestLoader};
use webvlm::io::{Checkpoint, TensorData};

/// A converted (f16) copy of the tiny checkpoint, shards of at most `shard_bytes`.
fn converted(name: &str, shard_bytes: usize) -> PathBuf {
    let src = scratch(&format!("{name}-src"));
    write_tiny_hf(&src, 11);
    let out = scratch(&format!("{name}-out"));
    let o = ConvertOptions { weights: WeightChoice::F16, shard_bytes, ..ConvertOptions::default() };
    convert(&src, &out, &o, &mut |_| {}).unwrap();
    out
}

fn manifest_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("manifest.json")).unwrap()
}

fn manifest_value(dir: &Path) -> Value {
    serde_json::from_str(&manifest_text(dir)).unwrap()
}

fn shard_bytes(dir: &Path, loader: &ManifestLoader, i: usize) -> Vec<u8> {
    std::fs::read(dir.join(&loader.manifest().shards[i].file)).unwrap()
}

/// Load through `ManifestLoader`, one shard at a time.
fn load_in_memory(dir: &Path) -> webvlm::Result<Checkpoint> {
    let mut l = ManifestLoader::new(&manifest_text(dir))?;
    for i in 0..l.manifest().shards.len() {
        let b = shard_bytes(dir, &l, i);
        l.add_shard(i, &b)?;
    }
    l.finish(std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
}

fn assert_err_has(r: webvlm::Result<impl Sized>, parts: &[&str]) {
    let e = match r {
        Ok(_) => panic!("accepted; expected an error mentioning {parts:?}"),
        Err(e) => e.to_string(),
    };
    for p in parts {
        assert!(e.contains(p), "error `{e}` lacks `{p}`");
    }
}

#[test]
fn loader_and_native_agree() {
    let dir = converted("mf-agree", 20_000);
    let native = open_dir(&dir).unwrap();
    let mem = load_in_memory(&dir).unwrap();
    let m = manifest_value(&dir);
    assert!(m["shards"].as_array().unwrap().len() > 2);
    assert_eq!(native.config, mem.config);
    assert_eq!(native.tokenizer.json, mem.tokenizer.json);
    assert_eq!(mem.tokenizer.eos_ids, vec![14, 15]);
    assert_eq!(mem.tokenizer.bos_id, Some(13));
    assert_eq!(native.weights.names(), mem.weights.names());
    assert_eq!(native.weights.names().len(), tiny_tensors().len());
    for name in native.weights.names() {
        let (a, b) = (native.weights.load(&name).unwrap(), mem.weights.load(&name).unwrap());
        assert_eq!(a.shape, b.shape);
        let kind = |d: &TensorData| match d {
            TensorData::F32(_) => "f32".to_string(),
            TensorData::Quant(q) => q.format().name(),
        };
        assert_eq!(kind(&a.data), kind(&b.data), "{name}");
        let want = if a.shape.len() == 2 { "f16" } else { "f32" };
        assert_eq!(kind(&a.data), want, "{name}");
        // The in-memory source hands tensors over (no second copy), but still knows shapes.
        assert_eq!(mem.weights.shape(&name).unwrap(), a.shape);
        assert_eq!(a.into_f32(), b.into_f32(), "{name}");
        let again = mem.weights.load(&name).unwrap_err().to_string();
        assert!(again.contains("already handed over"), "{again}");
    }
}

#[test]
fn missing_shard_is_named() {
    let dir = converted("mf-missing", 20_000);
    let mut l = ManifestLoader::new(&manifest_text(&dir)).unwrap();
    let n = l.manifest().shards.len();
    for i in 0..n - 1 {
        let b = shard_bytes(&dir, &l, i);
        l.add_shard(i, &b).unwrap();
    }
    let last = l.manifest().shards[n - 1].file.clone();
    assert_eq!(l.missing(), vec![last.as_str()]);
    assert_err_has(l.finish(TOKENIZER_JSON.to_string()), &[&last, "not loaded"]);
    std::fs::remove_file(dir.join(&last)).unwrap();
    assert_err_has(open_dir(&dir), &[&last]);
}

#[test]
fn wrong_sha256_is_rejected() {
    let dir = converted("mf-sha", 20_000);
    let mut m = manifest_value(&dir);
    let file = m["shards"][1]["file"].as_str().unwrap().to_string();
    m["shards"][1]["sha256"] = "ab".repeat(32).into();
    write_json(&dir.join("manifest.json"), &m);
    assert_err_has(open_dir(&dir), &[&file, "sha256 mismatch"]);
    let mut l = ManifestLoader::new(&manifest_text(&dir)).unwrap();
    let b = shard_bytes(&dir, &l, 1);
    assert_err_has(l.add_shard(1, &b), &[&file, "sha256 mismatch"]);
}

#[test]
fn corrupted_or_truncated_shard_is_rejected() {
    let dir = converted("mf-trunc", 20_000);
    let mut l = ManifestLoader::new(&manifest_text(&dir)).unwrap();
    let file = l.manifest().shards[0].file.clone();
    let good = shard_bytes(&dir, &l, 0);
    // one flipped byte: same size, different hash
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_err_has(l.add_shard(0, &flipped), &[&file, "sha256"]);
    // truncated
    let cut = &good[..good.len() - 100];
    assert_err_has(l.add_shard(0, cut), &[&file, "truncated"]);
    std::fs::write(dir.join(&file), cut).unwrap();
    assert_err_has(open_dir(&dir), &[&file, "truncated"]);
    std::fs::write(dir.join(&file), &flipped).unwrap();
    assert_err_has(open_dir(&dir), &[&file, "sha256"]);
    // the good bytes still load; a second add of the same shard and a bad index are refused
    l.add_shard(0, &good).unwrap();
    assert_err_has(l.add_shard(0, &good), &["twice"]);
    assert_err_has(l.add_shard(99, &good), &["99"]);
}

#[test]
fn changed_tokenizer_is_rejected() {
    let dir = converted("mf-tok", 1 << 20);
    let mut l = ManifestLoader::new(&manifest_text(&dir)).unwrap();
    let b = shard_bytes(&dir, &l, 0);
    l.add_shard(0, &b).unwrap();
    let changed = TOKENIZER_JSON.replace("\"a\": 0", "\"x\": 0");
    assert_err_has(l.finish(changed.clone()), &["tokenizer.json", "sha256"]);
    std::fs::write(dir.join("tokenizer.json"), format!("{changed} ")).unwrap();
    assert_err_has(open_dir(&dir), &["tokenizer.json", "bytes"]);
}

/// Apply `edit` to a fresh copy of the manifest and expect `ManifestLoader::new` to refuse it.
fn refuse(dir: &Path, edit: impl Fn(&mut Value), parts: &[&str]) {
    let mut m = manifest_value(dir);
    edit(&mut m);
    assert_err_has(ManifestLoader::new(&serde_json::to_string(&m).unwrap()), parts);
}

fn tensor_index(m: &Value, name: &str) -> usize {
    m["tensors"].as_array().unwrap().iter().position(|t| t["name"] == name).unwrap()
}

#[test]
fn inconsistent_manifests_are_refused() {
    let dir = converted("mf-validate", 1 << 20);
    let q = "model.layers.0.self_attn.q_proj.weight";
    let qi = tensor_index(&manifest_value(&dir), q);
    refuse(&dir, |m| m["version"] = 2.into(), &["version 2"]);
    refuse(&dir, |m| m["format"] = "gguf".into(), &["gguf"]);
    refuse(&dir, |m| m["tensors"][qi]["format"] = "int3".into(), &["int3"]);
    refuse(&dir, |m| m["tensors"][qi]["format"] = "int8".into(), &[q, "segments"]);
    refuse(&dir, |m| m["tensors"][qi]["shape"] = serde_json::json!([64, 32]), &[q, "needs"]);
    refuse(&dir, |m| m["tensors"][qi]["segments"]["w"]["length"] = 8.into(), &[q, "8 bytes"]);
    refuse(&dir, |m| m["tensors"][qi]["segments"]["w"]["shard"] = 5.into(), &[q, "shard 5"]);
    refuse(
        &dir,
        |m| {
            let o = m["tensors"][qi]["segments"]["w"]["offset"].as_u64().unwrap();
            m["tensors"][qi]["segments"]["w"]["offset"] = (o + 2).into();
        },
        &[q, "aligned"],
    );
    refuse(&dir, |m| m["tensors"][qi]["segments"]["w"]["offset"] = (1u64 << 40).into(), &[q, "past the end"]);
    refuse(&dir, |m| m["shards"][0]["file"] = "../model-00000.safetensors".into(), &["plain file name"]);
    refuse(&dir, |m| m["shards"][0]["sha256"] = "XYZ".into(), &["sha256"]);
    refuse(&dir, |m| m["tokenizer"]["file"] = "other.json".into(), &["other.json"]);
    refuse(
        &dir,
        |m| {
            let t = m["tensors"][0].clone();
            m["tensors"].as_array_mut().unwrap().push(t);
        },
        &["twice"],
    );
    assert_err_has(ManifestLoader::new("{"), &["manifest.json"]);
}

#[test]
fn manifest_disagreeing_with_shard_header_is_refused() {
    // Swap where two same-sized tensors live: the manifest stays self-consistent but no
    // longer matches the shard's own header, which both readers check.
    let dir = converted("mf-swap", 1 << 20);
    let mut m = manifest_value(&dir);
    let a = tensor_index(&m, "model.layers.0.self_attn.q_proj.weight");
    let b = tensor_index(&m, "model.layers.0.self_attn.o_proj.weight");
    let sa = m["tensors"][a]["segments"].clone();
    m["tensors"][a]["segments"] = m["tensors"][b]["segments"].clone();
    m["tensors"][b]["segments"] = sa;
    write_json(&dir.join("manifest.json"), &m);
    let mut l = ManifestLoader::new(&manifest_text(&dir)).unwrap();
    let bytes = shard_bytes(&dir, &l, 0);
    assert_err_has(l.add_shard(0, &bytes), &["model.layers.0.self_attn", "the manifest says"]);
    let ck = open_dir(&dir).unwrap();
    assert_err_has(
        ck.weights.load("model.layers.0.self_attn.q_proj.weight"),
        &["q_proj.weight.w", "the manifest says"],
    );
}
