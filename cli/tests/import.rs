//! `mgc import`: saved ComfyUI workflows (UI and API format) become mgc workflows that check and
//! compile; what is not a ComfyUI workflow is refused with exit code 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

mod common;

use std::path::{Path, PathBuf};

use common::mgc;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/comfyui").join(name)
}

/// ComfyUI's `models` folder with header-only files of every model the fixtures load.
fn models(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    for (folder, file, inventory) in [
        ("diffusion_models", "flux1-dev.safetensors", "flux1-dev"),
        ("diffusion_models", "wan2.2_t2v_high_noise_14B_fp16.safetensors", "wan2.1_t2v_14B_fp16"),
        ("diffusion_models", "wan2.2_t2v_low_noise_14B_fp16.safetensors", "wan2.1_t2v_14B_fp16"),
        ("text_encoders", "t5xxl_fp16.safetensors", "t5xxl_fp16"),
        ("text_encoders", "umt5_xxl_fp16.safetensors", "umt5_xxl_fp16"),
        // ComfyUI's older name for `text_encoders`.
        ("clip", "clip_l.safetensors", "clip_l"),
        ("vae", "ae.safetensors", "flux_ae"),
        ("vae", "wan_2.1_vae.safetensors", "wan_2.1_vae"),
    ] {
        std::fs::create_dir_all(models.join(folder)).unwrap();
        let inventory = root().join(format!("tests/fixtures/models/{inventory}.json"));
        let out = models.join(folder).join(file);
        let (code, _, err) = mgc(&["synth-model", inventory.to_str().unwrap(), "-o", out.to_str().unwrap()], dir);
        assert_eq!(code, 0, "{file}: {err}");
    }
    models
}

const FIXTURES: [&str; 4] = ["flux-distorch2.json", "flux-expert.json", "unmappable.json", "wan22-two-unets_api.json"];

#[test]
fn each_workflow_imports_to_the_toml_snapshotted() {
    let dir = tempfile::tempdir().unwrap();
    models(dir.path());
    for name in FIXTURES {
        std::fs::copy(fixture(name), dir.path().join(name)).unwrap();
        let (code, out, err) = mgc(&["import", name, "--models", "models"], dir.path());
        assert_eq!(code, 0, "{name}: {err}");
        let toml_name = name.replace(".json", ".toml");
        assert_eq!(out.lines().next().unwrap().split(':').next().unwrap(), format!("wrote {toml_name}"));
        let text = std::fs::read_to_string(dir.path().join(&toml_name)).unwrap();
        insta::assert_snapshot!(name, format!("{text}\n--- stderr\n{err}"));
    }
}

/// Every device the fixtures name, declared, so that `check` does not depend on this machine.
const DEVICES: &str = "[[device]]\nname = \"cuda:0\"\nmemory = \"24gb\"\n\n[[device]]\nname = \"cuda:1\"\nmemory = \"16gb\"\n\n[[device]]\nname = \"cpu\"\nmemory = \"64gb\"\n\n";

fn import_and_check(name: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    models(dir.path());
    std::fs::copy(fixture(name), dir.path().join(name)).unwrap();
    let (code, _, err) = mgc(&["import", name, "--models", "models", "-o", "imported.toml"], dir.path());
    assert_eq!(code, 0, "{name}: {err}");
    assert!(!err.contains("not found"), "{err}");
    let text = std::fs::read_to_string(dir.path().join("imported.toml")).unwrap();
    std::fs::write(dir.path().join("declared.toml"), format!("{DEVICES}{text}")).unwrap();
    mgc(&["check", "declared.toml"], dir.path())
}

#[test]
fn expert_and_whole_model_allocations_check_clean() {
    for name in ["flux-expert.json", "unmappable.json"] {
        let (code, out, err) = import_and_check(name);
        assert_eq!(code, 0, "{name}: {out}{err}");
    }
}

#[test]

fn virtual_vram_allocations_check_clean() {
    for name in ["flux-distorch2.json", "wan22-two-unets_api.json"] {
        let (code, out, err) = import_and_check(name);
        assert_eq!(code, 0, "{name}: {out}{err}");
    }
}

#[test]
fn stdout_takes_the_workflow_and_missing_files_refuse_compile() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("flux-expert.json"), dir.path().join("flux.json")).unwrap();
    let (code, out, err) = mgc(&["import", "flux.json", "-o", "-"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("# Imported by `mgc import` from `flux.json`"), "{out}");
    assert!(err.contains("warning: model file not found: models/diffusion_models/flux1-dev.safetensors"), "{err}");
    assert!(!dir.path().join("flux.toml").exists());

    // Missing files: the workflow is written, the plan refused.
    let (code, _, err) = mgc(&["import", "flux.json", "--compile", "flux.plan.json"], dir.path());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot compile: 4 model file(s) not found"), "{err}");
    assert!(dir.path().join("flux.toml").is_file());
    assert!(!dir.path().join("flux.plan.json").exists());
}

#[test]
fn compile_writes_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    models(dir.path());
    let api = r#"{"1": {"class_type": "CLIPLoaderMultiGPU", "inputs": {"clip_name": "clip_l.safetensors", "type": "flux", "device": "cpu"}}}"#;
    std::fs::write(dir.path().join("clip.json"), api).unwrap();
    let (code, out, err) =
        mgc(&["import", "clip.json", "--models", "models", "--compile", "clip.plan.json"], dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("wrote clip.toml: 1 model from 1 loader node"), "{out}");
    assert!(out.contains("wrote clip.plan.json"), "{out}");
    let text = std::fs::read_to_string(dir.path().join("clip.toml")).unwrap();
    assert!(text.contains("file = \"models/clip/clip_l.safetensors\""), "{text}");
}

#[test]
fn what_is_not_a_comfyui_workflow_is_refused_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let deep = format!("{{\"nodes\": {}{}}}", "[".repeat(5000), "]".repeat(5000));
    let cases: [(&str, Vec<u8>, &str); 7] = [
        ("text.json", b"not json at all".to_vec(), "not JSON"),
        ("array.json", b"[1, 2, 3]".to_vec(), "not a ComfyUI workflow: the file holds an array"),
        ("plan.json", br#"{"version": 1, "models": []}"#.to_vec(), "not a ComfyUI workflow"),
        ("deep.json", deep.into_bytes(), "nested deeper than a ComfyUI workflow is"),
        ("binary.json", b"\xff\xfe\x00".to_vec(), "is not UTF-8 text"),
        ("huge.json", vec![b' '; (16 << 20) + 1], "not a ComfyUI workflow"),
        (
            "samplers.json",
            br#"{"3": {"class_type": "KSampler", "inputs": {}}}"#.to_vec(),
            "has no ComfyUI-MultiGPU loader",
        ),
    ];
    for (name, bytes, message) in cases {
        std::fs::write(dir.path().join(name), bytes).unwrap();
        let (code, out, err) = mgc(&["import", name], dir.path());
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(err.starts_with("error: "), "{name}: {err}");
        assert!(err.contains(message), "{name}: {err}");
        assert!(!dir.path().join(name.replace(".json", ".toml")).exists(), "{name}");
    }
    let (code, _, err) = mgc(&["import", "missing.json"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("cannot read `missing.json`"), "{err}");
    std::fs::copy(fixture("flux-expert.json"), dir.path().join("flux.json")).unwrap();
    let (code, _, err) = mgc(&["import", "flux.json", "--models", "nowhere"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("the models folder `nowhere` is not a folder"), "{err}");
}
