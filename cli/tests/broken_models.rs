//! A corpus of broken model files, each answered by `mgc inspect` with its own clear error,
//! naming the file, and exit code 1 — never a panic, never a huge allocation.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

fn safetensors(header: &str, data: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + data, 0);
    bytes
}

/// A GGUF file built field by field.
#[derive(Default)]
struct Gguf(Vec<u8>);

impl Gguf {
    fn start(version: u32, tensors: u64, kvs: u64) -> Self {
        let mut g = Self(b"GGUF".to_vec());
        g.u32(version).u64(tensors).u64(kvs);
        g
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// A tensor info: name, dims (ggml order), type, offset.
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for d in dims {
            self.u64(*d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to the default alignment and appends `data` bytes.
    fn data(&mut self, data: usize) -> Vec<u8> {
        while !self.0.len().is_multiple_of(32) {
            self.0.push(0);
        }
        self.0.resize(self.0.len() + data, 0);
        self.0.clone()
    }
}

fn corpus(dir: &Path) -> Vec<(String, &'static str)> {
    let mut cases: Vec<(&str, Vec<u8>, &'static str)> = vec![
        ("empty.safetensors", vec![], "is empty"),
        ("short.safetensors", vec![1, 2, 3, 4, 5], "too short"),
        (
            "length-beyond-file.safetensors",
            {
                let mut b = 1000u64.to_le_bytes().to_vec();
                b.extend(b"{}  ");
                b
            },
            "but the file has only",
        ),
        (
            "not-utf8.safetensors",
            {
                let mut b = 6u64.to_le_bytes().to_vec();
                b.extend(b"{\"\xff\xfe\"}");
                b
            },
            "not valid UTF-8",
        ),
        ("not-json.safetensors", safetensors("{not json", 0), "not valid JSON"),
        ("json-array.safetensors", safetensors("[1, 2, 3]", 0), "not an object"),
        (
            "unknown-dtype.safetensors",
            safetensors(r#"{"w":{"dtype":"F7","shape":[2],"data_offsets":[0,2]}}"#, 2),
            "unknown dtype `F7`",
        ),
        (
            "shape-overflow.safetensors",
            safetensors(r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}"#, 4),
            "overflows",
        ),
        (
            "size-mismatch.safetensors",
            safetensors(r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}}"#, 16),
            "needs 16",
        ),
        (
            "out-of-bounds.safetensors",
            safetensors(r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, 8),
            "past the end",
        ),
        (
            "overlap.safetensors",
            safetensors(
                r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
                24,
            ),
            "overlaps",
        ),
        (
            "duplicate.safetensors",
            safetensors(
                r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
                2,
            ),
            "appears twice",
        ),
        (
            "negative-dim.safetensors",
            safetensors(r#"{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}"#, 1),
            "tensor `a`",
        ),
        ("missing-field.safetensors", safetensors(r#"{"a":{"dtype":"U8","shape":[1]}}"#, 1), "data_offsets"),
        ("metadata-not-strings.safetensors", safetensors(r#"{"__metadata__":{"a":1}}"#, 0), "__metadata__"),
        (
            "offsets-backwards.safetensors",
            safetensors(r#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#, 4),
            "end before",
        ),
        (
            "f4-half-byte.safetensors",
            safetensors(r#"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#, 2),
            "whole units",
        ),
        (
            "deep-json.safetensors",
            safetensors(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)), 0),
            "not an object",
        ),
        ("noise.bin", b"\x7fELF\x02\x01\x01\x00garbage".to_vec(), "neither safetensors nor GGUF"),
        ("version-1.gguf", Gguf::start(1, 0, 0).data(0), "version 1 is not supported"),
        (
            "big-endian.gguf",
            {
                let mut g = Gguf(b"GGUF".to_vec());
                g.u32(3u32.swap_bytes()).u64(0).u64(0);
                g.data(0)
            },
            "big-endian",
        ),
        ("truncated.gguf", b"GGUF\x03\x00\x00\x00".to_vec(), "too short"),
        ("absurd-tensor-count.gguf", Gguf::start(3, u64::MAX, 0).data(64), "tensors, more than the file could hold"),
        ("absurd-kv-count.gguf", Gguf::start(3, 0, 1 << 60).data(64), "metadata keys, more than"),
        (
            "string-beyond-file.gguf",
            {
                let mut g = Gguf::start(3, 0, 1);
                g.u64(1 << 40);
                g.data(64)
            },
            "runs past the end",
        ),
        (
            "unknown-value-type.gguf",
            {
                let mut g = Gguf::start(3, 0, 1);
                g.str("k").u32(99);
                g.data(64)
            },
            "unknown value type 99",
        ),
        (
            "deep-arrays.gguf",
            {
                let mut g = Gguf::start(3, 0, 1);
                g.str("k").u32(9);
                for _ in 0..12 {
                    g.u32(9).u64(1);
                }
                g.data(64)
            },
            "nests arrays",
        ),
        (
            "array-too-long.gguf",
            {
                let mut g = Gguf::start(3, 0, 1);
                g.str("k").u32(9).u32(10).u64(1 << 50);
                g.data(64)
            },
            "array elements, more than",
        ),
        (
            "bad-alignment.gguf",
            {
                let mut g = Gguf::start(3, 0, 1);
                g.str("general.alignment").u32(4).u32(3);
                g.data(0)
            },
            "not a power of two",
        ),
        (
            "unknown-ggml-type.gguf",
            {
                let mut g = Gguf::start(3, 1, 0);
                g.tensor("w", &[32], 200, 0);
                g.data(64)
            },
            "unknown ggml type 200",
        ),
        (
            "removed-ggml-type.gguf",
            {
                let mut g = Gguf::start(3, 1, 0);
                g.tensor("w", &[32], 31, 0);
                g.data(64)
            },
            "unknown ggml type 31",
        ),
        (
            "five-dims.gguf",
            {
                let mut g = Gguf::start(3, 1, 0);
                g.tensor("w", &[1, 1, 1, 1, 1], 0, 0);
                g.data(64)
            },
            "5 dimensions",
        ),
        (
            "dims-overflow.gguf",
            {
                let mut g = Gguf::start(3, 1, 0);
                g.tensor("w", &[1 << 40, 1 << 40], 0, 0);
                g.data(64)
            },
            "overflows",
        ),
        (
            "not-whole-blocks.gguf",
            {
                let mut g = Gguf::start(3, 1, 0);
                g.tensor("w", &[17], 8, 0);
                g.data(64)
            },
            "units of 32 elements",
        ),
        (
            "misaligned.gguf",
            {
                let mut g = Gguf::start(3, 1, 0);
                g.tensor("w", &[4], 0, 3);
                g.data(64)
            },
            "not a multiple of the alignment",
        ),
        (
            "tensor-beyond-file.gguf",
            {
                let mut g = Gguf::start(3, 1, 0);
                g.tensor("w", &[1024], 0, 0);
                g.data(64)
            },
            "past the end",
        ),
        (
            "gguf-overlap.gguf",
            {
                let mut g = Gguf::start(3, 2, 0);
                g.tensor("a", &[16], 0, 0).tensor("b", &[16], 0, 32);
                g.data(128)
            },
            "overlaps",
        ),
        (
            "gguf-duplicate.gguf",
            {
                let mut g = Gguf::start(3, 2, 0);
                g.tensor("a", &[8], 0, 0).tensor("a", &[8], 0, 32);
                g.data(64)
            },
            "appears twice",
        ),
        (
            "header-cut.gguf",
            {
                let mut g = Gguf::start(3, 0, 1);
                g.str("k").u32(4);
                g.0.clone()
            },
            "ends inside the header",
        ),
    ];
    let mut out = Vec::new();
    for (name, bytes, expect) in cases.drain(..) {
        std::fs::write(dir.join(name), bytes).unwrap();
        out.push((name.to_owned(), expect));
    }
    // A header length past the format's limit, in a (sparse) file large enough to hold it.
    let big = dir.join("huge-header.safetensors");
    let file = std::fs::File::create(&big).unwrap();
    std::io::Write::write_all(&mut &file, &150_000_000u64.to_le_bytes()).unwrap();
    file.set_len(160_000_000).unwrap();
    out.push(("huge-header.safetensors".into(), "limit"));
    std::fs::create_dir(dir.join("a-directory.safetensors")).unwrap();
    out.push(("a-directory.safetensors".into(), "is a directory"));
    out.push(("does-not-exist.safetensors".into(), "cannot read"));
    out
}

#[test]
fn every_broken_file_gets_its_own_clear_error_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let cases = corpus(dir.path());
    assert!(cases.len() >= 40);
    let mut transcript = String::new();
    for (name, expect) in &cases {
        for format in ["human", "json"] {
            let output = Command::new(env!("CARGO_BIN_EXE_mgc"))
                .current_dir(dir.path())
                .args(["inspect", name, "--format", format])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{name}: {stdout}{stderr}");
            assert!(!stderr.contains("panicked"), "{name}: {stderr}");
            let said = if format == "json" { stdout.to_string() } else { unwrapped(&stderr) };
            assert!(said.contains(name.as_str()), "{name}: the message must name the file: {said}");
            assert!(said.contains(expect), "{name}: expected `{expect}` in: {said}");
            if format == "human" {
                writeln!(transcript, "$ mgc inspect {name}\n{stderr}").unwrap();
            } else {
                let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
                assert!(json["errors"][0]["message"].as_str().unwrap().contains(expect), "{name}");
            }
        }
    }
    let transcript = transcript.replace("os error 2", "os error N");
    insta::assert_snapshot!(transcript);
}

/// A diagnostic's text with the lines miette wrapped joined again.
fn unwrapped(text: &str) -> String {
    text.replace("\n  │ ", " ")
}

/// Writes the corpus into `tests/hostile/` (run with `--ignored` after changing it).
#[test]
#[ignore = "writes the committed corpus; run by hand"]
fn write_hostile_corpus() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/hostile");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut expected = String::from("# file\twhat `mgc inspect FILE` must say (exit code 1)\n");
    for (name, expect) in corpus(dir.path()) {
        let path = dir.path().join(&name);
        // Files only, and small ones: the sparse, directory and missing cases stay generated.
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if !meta.is_file() || meta.len() > 1 << 20 {
            continue;
        }
        std::fs::copy(&path, out.join(&name)).unwrap();
        expected.push_str(&format!("{name}\t{expect}\n"));
    }
    std::fs::write(out.join("expected.tsv"), expected).unwrap();
}

/// The committed corpus: every file refused with its own error and exit code 1, and the whole
/// corpus read with a small fraction of the memory its headers declare.
#[test]
fn the_committed_hostile_corpus_is_refused_within_bounded_memory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/hostile");
    let expected = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let cases: Vec<(&str, &str)> =
        expected.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('\t')).collect();
    assert!(cases.len() >= 30, "the corpus has {} files", cases.len());
    for (name, expect) in &cases {
        let output =
            Command::new(env!("CARGO_BIN_EXE_mgc")).args(["inspect", name]).current_dir(&dir).output().unwrap();
        let stderr = unwrapped(&String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(name) && stderr.contains(expect), "{name}: expected `{expect}` in {stderr}");
    }
    // Headers in the corpus declare up to 2^64 bytes; no child came near even 64 MiB.
    #[expect(unsafe_code, reason = "getrusage fills a plain struct")]
    // SAFETY: `usage` is a valid, writable rusage.
    let peak_kib = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss
    };
    assert!(peak_kib > 0 && peak_kib < 64 * 1024, "a child peaked at {peak_kib} KiB");
}
