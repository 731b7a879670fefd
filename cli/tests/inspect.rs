//! `mgc inspect` as a user sees it: the header-only flux1-dev (780 tensors, 23,802,816,640 bytes,
//! 19 double and 38 single blocks in order) and an SDXL checkpoint split into its four models.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::path::Path;
use std::process::Command;

fn synth(inventory: &str, dir: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = format!("{inventory}.safetensors");
    let output = Command::new(env!("CARGO_BIN_EXE_mgc"))
        .arg("synth-model")
        .arg(root.join(format!("tests/fixtures/models/{inventory}.json")))
        .arg("-o")
        .arg(dir.join(&file))
        .output()
        .unwrap();
    assert!(output.status.success());
    file
}

fn inspect(file: &str, dir: &Path, format: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_mgc"))
        .args(["inspect", file, "--format", format])
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn flux_dev_header_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = synth("flux1-dev", dir.path());
    let json: serde_json::Value = serde_json::from_str(&inspect(&file, dir.path(), "json")).unwrap();
    assert_eq!(json["file"], "flux1-dev.safetensors");
    assert_eq!(json["format"], "safetensors");
    assert_eq!(json["tensor_count"], 780);
    assert_eq!(json["bytes"], 23_802_816_640u64);
    let model = &json["models"][0];
    assert_eq!(
        (model["family"].as_str(), model["role"].as_str(), model["prefix"].as_str()),
        (Some("flux"), Some("diffusion"), Some(""))
    );
    assert_eq!(model["tensor_count"], 780);
    assert_eq!(model["bytes"], 23_802_816_640u64);
    let layers: Vec<&str> = model["layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    let double: Vec<&str> = layers.iter().copied().filter(|n| n.starts_with("double_blocks.")).collect();
    let single: Vec<&str> = layers.iter().copied().filter(|n| n.starts_with("single_blocks.")).collect();
    assert_eq!(double, (0..19).map(|i| format!("double_blocks.{i}")).collect::<Vec<_>>());
    assert_eq!(single, (0..38).map(|i| format!("single_blocks.{i}")).collect::<Vec<_>>());
    let sum: u64 = model["layers"].as_array().unwrap().iter().map(|l| l["bytes"].as_u64().unwrap()).sum();
    assert_eq!(sum, 23_802_816_640);
    insta::assert_snapshot!(inspect(&file, dir.path(), "human"));
}

#[test]
fn sdxl_checkpoint_splits_into_its_models() {
    let dir = tempfile::tempdir().unwrap();
    let file = synth("sdxl_base_1.0_checkpoint", dir.path());
    let json: serde_json::Value = serde_json::from_str(&inspect(&file, dir.path(), "json")).unwrap();
    let models: Vec<(&str, &str, &str)> = json["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["prefix"].as_str().unwrap(), m["family"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        models,
        vec![
            ("conditioner.embedders.0.", "clip-l", "text-encoder"),
            ("conditioner.embedders.1.", "clip-g", "text-encoder"),
            ("model.diffusion_model.", "sdxl", "diffusion"),
            ("first_stage_model.", "sd-vae", "vae"),
        ]
    );
    insta::assert_snapshot!(inspect(&file, dir.path(), "human"));
}
