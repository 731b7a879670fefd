//! Where `mgc compile -o` writes: `-` is stdout; a device file is written in place and stays a
//! device; a symlink stays a link.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

mod common;

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::Command;

use common::mgc;

/// A folder with a header-only Flux and a workflow that compiles without detecting anything.
fn with_workflow() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let inventory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/flux1-dev.json");
    let (code, _, err) = mgc(&["synth-model", inventory.to_str().unwrap(), "-o", "flux.safetensors"], dir.path());
    assert_eq!(code, 0, "{err}");
    std::fs::write(
        dir.path().join("w.toml"),
        "[[device]]\nname = \"cuda:0\"\nmemory = \"24gb\"\n\n[[device]]\nname = \"cpu\"\nmemory = \"64gb\"\n\n[[model]]\nname = \"flux\"\nfile = \"flux.safetensors\"\ncompute = \"cuda:0\"\nallocation = \"cuda:0,12gb;cpu,*\"\n",
    )
    .unwrap();
    dir
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn a_dash_prints_the_plan_on_stdout_and_writes_no_file() {
    let dir = with_workflow();
    for format in ["human", "json"] {
        let (code, out, err) = mgc(&["compile", "w.toml", "-o", "-", "--format", format], dir.path());
        assert_eq!(code, 0, "{err}");
        let plan =
            mgc_plan::Plan::from_json(&out).unwrap_or_else(|e| panic!("{format}: stdout is not a plan: {e}\n{out}"));
        assert_eq!(plan.models[0].file, "flux.safetensors", "paths relative to the working folder");
    }
    assert_eq!(names(dir.path()), ["flux.safetensors", "w.toml"], "no file named `-`");
}

#[test]
fn a_device_file_stays_a_device_file() {
    let dir = with_workflow();
    let device = dir.path().join("null");
    // The same device as `/dev/null` (1, 3), made in the temporary folder.
    let made = Command::new("mknod").arg(&device).args(["c", "1", "3"]).output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot make a character device here (mknod needs root): {made:?}");
        return;
    }
    let (code, out, err) = mgc(&["compile", "w.toml", "-o", "null"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("wrote null"), "{out}");
    assert!(std::fs::symlink_metadata(&device).unwrap().file_type().is_char_device(), "still a device");
    assert_eq!(names(dir.path()), ["flux.safetensors", "null", "w.toml"], "no temporary left");
}

#[test]
fn a_symlinked_plan_keeps_its_link() {
    let dir = with_workflow();
    std::fs::create_dir(dir.path().join("plans")).unwrap();
    std::fs::write(dir.path().join("plans/real.json"), "old").unwrap();
    std::os::unix::fs::symlink("plans/real.json", dir.path().join("link.json")).unwrap();
    let (code, _, err) = mgc(&["compile", "w.toml", "-o", "link.json"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::symlink_metadata(dir.path().join("link.json")).unwrap().file_type().is_symlink());
    let written = std::fs::read_to_string(dir.path().join("plans/real.json")).unwrap();
    assert!(mgc_plan::Plan::from_json(&written).is_ok());
}

#[test]
fn explain_draws_on_stdout_with_a_dash() {
    let dir = with_workflow();
    assert_eq!(mgc(&["compile", "w.toml"], dir.path()).0, 0);
    let (code, out, err) = mgc(&["explain", "w.plan.json", "--svg", "-"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("<svg") && out.trim_end().ends_with("</svg>"), "{out}");
    assert!(!dir.path().join("-").exists());
}
