//! safetensors reader and writer: round trips, alignment, contiguity (as the reference
//! implementation requires), and hostile or broken inputs rejected with errors naming the file.

use crate::io_common;

use io_common::{encode, scratch, Rng};
use proptest::prelude::*;
use std::collections::BTreeMap;
use webvlm::io::safetensors::{serialize, Dtype, Header, WriteTensor, ALIGN, MAX_HEADER_BYTES, PAD_PREFIX};
use webvlm::io::WeightSource;

const FILE: &str = "bad.safetensors";

/// A file with a header `json` (as given) and `data_len` data bytes.
fn raw_file(json: &str, data_len: usize) -> Vec<u8> {
    let mut b = (json.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(json.as_bytes());
    b.resize(b.len() + data_len, 7);
    b
}

fn parse_err(bytes: &[u8]) -> String {
    let e = Header::parse(FILE, bytes).expect_err("must be rejected").to_string();
    assert!(e.contains(FILE), "error does not name the file: {e}");
    e
}

/// The reference implementation's rule: sorted by offset, tensors tile the data section.
fn assert_contiguous(h: &Header, file_len: usize) {
    let mut pos = 0;
    for t in &h.tensors {
        assert_eq!(t.begin, pos, "hole before `{}`", t.name);
        pos = t.end;
    }
    assert_eq!(h.data_start + pos, file_len, "data section not fully covered");
}

#[test]
fn round_trip_all_dtypes_aligned() {
    let mut rng = Rng::new(1);
    let f = rng.vec(7, 3.0);
    let (f16b, f16v) = encode(Dtype::F16, &rng.vec(5, 3.0));
    let (bf16b, bf16v) = encode(Dtype::BF16, &rng.vec(3, 3.0));
    let i8b: Vec<u8> = vec![0x80, 0x7f, 1, 0xff, 5];
    let u8b: Vec<u8> = vec![1, 2, 3];
    let u32v: Vec<u32> = vec![0xdead_beef, 1, 2];
    let i32v: Vec<i32> = vec![-5, 6];
    let tensors = vec![
        WriteTensor { name: "f".into(), dtype: Dtype::F32, shape: vec![7], data: bytemuck::cast_slice(&f) },
        WriteTensor { name: "i8".into(), dtype: Dtype::I8, shape: vec![5], data: &i8b },
        WriteTensor { name: "h".into(), dtype: Dtype::F16, shape: vec![5, 1], data: &f16b },
        WriteTensor { name: "u8".into(), dtype: Dtype::U8, shape: vec![1, 3], data: &u8b },
        WriteTensor { name: "bf".into(), dtype: Dtype::BF16, shape: vec![3], data: &bf16b },
        WriteTensor { name: "u32".into(), dtype: Dtype::U32, shape: vec![3], data: bytemuck::cast_slice(&u32v) },
        WriteTensor { name: "i32".into(), dtype: Dtype::I32, shape: vec![2], data: bytemuck::cast_slice(&i32v) },
        WriteTensor { name: "empty".into(), dtype: Dtype::F32, shape: vec![0, 4], data: &[] },
    ];
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let (bytes, layout) = serialize(&tensors, &meta).unwrap();
    assert_eq!(layout.size, bytes.len());
    let h = Header::parse("rt.safetensors", &bytes).unwrap();
    assert_eq!(h.metadata, meta);
    assert_eq!(h.data_start % ALIGN, 0);
    assert_contiguous(&h, bytes.len());
    for (t, r) in tensors.iter().zip(&layout.ranges) {
        assert_eq!(r.start % ALIGN, 0, "`{}` at {}", t.name, r.start);
        assert_eq!(h.file_range(&t.name).unwrap(), *r);
        let info = h.info(&t.name).unwrap();
        assert_eq!((info.dtype, &info.shape), (t.dtype, &t.shape));
        assert_eq!(h.data(&bytes, &t.name).unwrap(), t.data);
    }
    // Tensors are written in the order given.
    let order: Vec<&str> = h.tensors.iter().map(|t| t.name.as_str()).filter(|n| !n.starts_with(PAD_PREFIX)).collect();
    let given: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(order, given);
    assert_eq!(h.to_f32(&bytes, "f").unwrap(), f);
    assert_eq!(h.to_f32(&bytes, "h").unwrap(), f16v);
    assert_eq!(h.to_f32(&bytes, "bf").unwrap(), bf16v);
    let e = h.to_f32(&bytes, "u32").unwrap_err().to_string();
    assert!(e.contains("rt.safetensors") && e.contains("u32"), "{e}");
    assert!(h.info("nope").unwrap_err().to_string().contains("nope"));
}

#[test]
fn writer_rejects_length_mismatch_and_duplicates() {
    let d = [0u8; 12];
    let bad = [WriteTensor { name: "x".into(), dtype: Dtype::F32, shape: vec![2, 2], data: &d }];
    assert!(serialize(&bad, &BTreeMap::new()).unwrap_err().to_string().contains("`x`"));
    let dup = [
        WriteTensor { name: "x".into(), dtype: Dtype::U8, shape: vec![12], data: &d },
        WriteTensor { name: "x".into(), dtype: Dtype::U8, shape: vec![12], data: &d },
    ];
    assert!(serialize(&dup, &BTreeMap::new()).is_err());
}

fn valid_file() -> Vec<u8> {
    let v: Vec<f32> = (0..10).map(|i| i as f32).collect();
    let t = [WriteTensor { name: "w".into(), dtype: Dtype::F32, shape: vec![2, 5], data: bytemuck::cast_slice(&v) }];
    serialize(&t, &BTreeMap::new()).unwrap().0
}

#[test]
fn rejects_truncated_files() {
    let good = valid_file();
    Header::parse(FILE, &good).unwrap();
    let e = parse_err(&good[..good.len() - 4]);
    assert!(e.contains("`w`") && e.contains("outside"), "{e}");
    let e = parse_err(&good[..5]);
    assert!(e.contains("truncated"), "{e}");
    let e = parse_err(&good[..20]);
    assert!(e.contains("past the end"), "{e}");
}

#[test]
fn rejects_hostile_header_lengths() {
    let mut b = valid_file();
    b[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(parse_err(&b).contains("limit"));
    b[..8].copy_from_slice(&(MAX_HEADER_BYTES + 1).to_le_bytes());
    assert!(parse_err(&b).contains("limit"));
    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    parse_err(&b);
    let n = b.len() as u64;
    b[..8].copy_from_slice(&n.to_le_bytes());
    assert!(parse_err(&b).contains("past the end"));
}

#[test]
fn rejects_bad_headers() {
    let cases: &[(&str, usize, &str)] = &[
        (r#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]"#, 8, "JSON"),
        (r#"[1, 2]"#, 0, "JSON"),
        (r#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}"#, 8, "outside"),
        (r#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 4]}}"#, 8, "outside"),
        (r#"{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#, 8, "needs 12"),
        (r#"{"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}"#, 8, "F64"),
        (r#"{"w": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 8]}}"#, 8, "Q9"),
        (
            r#"{"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 8]}}"#,
            8,
            "overflows",
        ),
        (r#"{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}}"#, 8, "dimension"),
        (r#"{"w": {"dtype": "F32", "shape": [2]}}"#, 8, "data_offsets"),
        (r#"{"w": {"shape": [2], "data_offsets": [0, 8]}}"#, 8, "dtype"),
        (r#"{"w": 5}"#, 8, "object"),
        (r#"{"__metadata__": {"a": 1}}"#, 0, "__metadata__"),
        (
            r#"{"a": {"dtype": "U8", "shape": [6], "data_offsets": [0, 6]}, "b": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}}"#,
            8,
            "overlap",
        ),
    ];
    for (json, data, want) in cases {
        let e = parse_err(&raw_file(json, *data));
        assert!(e.contains(want), "header {json}: error `{e}` lacks `{want}`");
        if json.contains("\"w\"") && !json.contains("JSON") && *want != "JSON" {
            assert!(e.contains("`w`"), "error `{e}` does not name the tensor");
        }
    }
    let mut b = raw_file("{}", 0);
    b[8] = 0xff;
    assert!(parse_err(&b).contains("UTF-8"));
}

#[test]
fn file_errors_name_the_path() {
    // An HF folder whose model.safetensors is cut short: the error names the file on disk.
    let dir = scratch("st-truncated");
    let good = valid_file();
    std::fs::write(dir.join("model.safetensors"), &good[..good.len() - 1]).unwrap();
    let e = webvlm::io::hf::HfWeights::open(&dir).err().expect("truncated").to_string();
    assert!(e.contains("model.safetensors") && e.contains("`w`"), "{e}");
    std::fs::write(dir.join("model.safetensors"), &good).unwrap();
    let w = webvlm::io::hf::HfWeights::open(&dir).unwrap();
    assert_eq!(w.load("w").unwrap().into_f32(), (0..10).map(|i| i as f32).collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random tensors survive a round trip, land aligned, and tile the file.
    #[test]
    fn prop_round_trip(sizes in prop::collection::vec((0usize..40, 0usize..4), 1..8)) {
        let dts = [Dtype::U8, Dtype::F16, Dtype::F32, Dtype::I8];
        let datas: Vec<Vec<u8>> = sizes.iter().enumerate()
            .map(|(i, &(n, d))| (0..n * dts[d].size()).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let ts: Vec<WriteTensor> = sizes.iter().zip(&datas).enumerate()
            .map(|(i, (&(n, d), b))| WriteTensor { name: format!("t{i}"), dtype: dts[d], shape: vec![n], data: b })
            .collect();
        let (bytes, layout) = serialize(&ts, &BTreeMap::new()).unwrap();
        let h = Header::parse("p.safetensors", &bytes).unwrap();
        assert_contiguous(&h, bytes.len());
        for (t, r) in ts.iter().zip(&layout.ranges) {
            prop_assert_eq!(r.start % ALIGN, 0);
            prop_assert_eq!(h.data(&bytes, &t.name).unwrap(), t.data);
        }
    }

    /// Corrupting any byte of the header never panics: it parses or fails with the file named.
    #[test]
    fn prop_corruption_never_panics(pos in 0usize..120, val: u8) {
        let mut b = valid_file();
        let p = pos % b.len();
        b[p] = val;
        if let Err(e) = Header::parse(FILE, &b) {
            prop_assert!(e.to_string().contains(FILE));
        }
    }
}
