//! Every example workflow checks clean against its models (made header-only from inventories).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;
use std::process::Command;

#[test]
fn every_example_checks_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let manifest = std::fs::read_to_string(root.join("examples/models.txt")).unwrap();
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut parts = line.split_whitespace();
        let (file, inventory) = (parts.next().unwrap(), parts.next().unwrap());
        let status = Command::new(env!("CARGO_BIN_EXE_mgc"))
            .args([
                "synth-model",
                root.join(format!("tests/fixtures/models/{inventory}.json"))
                    .to_str()
                    .unwrap(),
                "-o",
            ])
            .arg(models.join(file))
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let mut examples: Vec<_> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 5);
    for example in examples {
        let name = example.file_name().unwrap().to_str().unwrap().to_owned();
        std::fs::copy(&example, dir.path().join(&name)).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_mgc"))
            .arg("check")
            .arg(&name)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert_eq!(output.status.code(), Some(0), "{name}: {err}");
        insta::assert_snapshot!(format!("example__{name}"), out);
    }
}
