//! Every failure, in either format: `--format json` prints `{"errors": [...]}` on stdout with the
//! exit code of the human form; a file of the wrong kind is named as such, never quoted whole.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

mod common;

use common::mgc;
use std::path::Path;

fn with_tiny() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workflows/models/tiny.safetensors");
    std::fs::copy(tiny, dir.path().join("tiny.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("ok.toml"),
        "[[device]]\nname = \"cpu\"\nmemory = \"8gb\"\n\n[[model]]\nname = \"m\"\nfile = \"tiny.safetensors\"\ncompute = \"cpu\"\n",
    )
    .unwrap();
    dir
}

/// Runs `args` in both formats; checks the codes agree, stdout is one JSON error list and the
/// human form says `expect` on stderr. Returns the human stderr and the JSON.
fn fails(args: &[&str], dir: &Path, code: i32, expect: &str) -> (String, serde_json::Value) {
    let (human_code, human_out, human_err) = mgc(args, dir);
    assert_eq!(human_code, code, "{args:?}: {human_out}{human_err}");
    assert!(human_err.contains(expect), "{args:?}: expected `{expect}` in {human_err}");
    let json_args: Vec<&str> = args.iter().copied().chain(["--format", "json"]).collect();
    let (json_code, json_out, _) = mgc(&json_args, dir);
    assert_eq!(json_code, code, "{json_args:?}: {json_out}");
    let json: serde_json::Value = serde_json::from_str(&json_out).unwrap();
    let errors = json["errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "{json_args:?}");
    assert!(errors[0]["message"].as_str().unwrap().contains(expect), "{json_args:?}: {json_out}");
    (human_err, json)
}

#[test]
fn every_command_with_a_format_prints_json_on_every_failure() {
    let dir = with_tiny();
    let d = dir.path();
    fails(&["check", "missing.toml"], d, 1, "cannot read `missing.toml`");
    fails(&["compile", "missing.toml"], d, 1, "cannot read `missing.toml`");
    fails(&["inspect", "missing.safetensors"], d, 1, "missing.safetensors");
    fails(&["check", "--allocation", "cuda:0,4gbs"], d, 1, "unknown unit `gbs`");
    fails(&["compile", "ok.toml", "-o", "no/such/folder/plan.json"], d, 2, "cannot write the plan");
    // Arguments clap refuses are a usage error, exit 2, in JSON too.
    let (_, json) = fails(&["check"], d, 2, "required arguments were not provided");
    assert!(json["errors"][0]["help"].as_str().unwrap().contains("--help"));
}

#[test]
fn a_plan_given_as_a_workflow_is_named_not_quoted() {
    let dir = with_tiny();
    let d = dir.path();
    assert_eq!(mgc(&["compile", "ok.toml"], d).0, 0);
    // A long single-line plan: the error names it and quotes none of it.
    let plan = std::fs::read_to_string(d.join("ok.plan.json")).unwrap();
    let padded = plan.replacen('{', &format!("{{\"padding\":\"{}\",", "x".repeat(200_000)), 1);
    std::fs::write(d.join("big.plan.json"), padded).unwrap();
    for command in ["check", "compile"] {
        let expect = "`big.plan.json` looks like a plan (JSON), not a workflow (TOML)";
        let (err, json) = fails(&[command, "big.plan.json"], d, 1, expect);
        assert!(err.len() < 1000, "{command}: {} bytes of error", err.len());
        assert!(json["errors"][0]["help"].as_str().unwrap().contains("mgc explain big.plan.json"));
    }
    std::fs::write(d.join("other.json"), "{\"devices\": []}").unwrap();
    fails(&["check", "other.json"], d, 1, "`other.json` is JSON, not a workflow (TOML)");
    // And the other way round: `explain` compiles a workflow it is given, and explains its plan.
    let (code, from_workflow, err) = mgc(&["explain", "ok.toml"], d);
    assert_eq!(code, 0, "{err}");
    assert_eq!(from_workflow, mgc(&["explain", "ok.plan.json"], d).1);
}

#[test]
fn long_lines_are_cut_around_the_error() {
    let dir = with_tiny();
    let d = dir.path();
    // The mistake sits 100,000 characters into one line: `cpu` is declared, `cuda:7` is not.
    let text = format!(
        "[[device]]\nname = \"cpu\"\nmemory = \"8gb\"\n\n[[model]]\nname = \"m\"\nfile = \"tiny.safetensors\"\ncompute = \"cpu\"\nallocation = \"cpu,1gb;{}cuda:7,*\"\n",
        " ".repeat(100_000)
    );
    std::fs::write(d.join("long.toml"), text).unwrap();
    let (err, json) = fails(&["check", "long.toml"], d, 1, "device `cuda:7` is not declared");
    assert!(err.len() < 3000, "{} bytes of error:\n{err}", err.len());
    assert!(err.contains('…'), "{err}");
    let first = &json["errors"][0];
    assert_eq!((first["file"].as_str(), first["line"].as_u64()), (Some("long.toml"), Some(9)));
    assert!(first["column"].as_u64().unwrap() > 100_000, "{first}");
    // The header shows the column in the file as written, not in the cut line.
    let column = first["column"].as_u64().unwrap();
    assert!(err.contains(&format!("long.toml:9:{column}]")), "{err}");
}

#[test]
fn one_broken_model_file_used_twice_is_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("broken.safetensors"), b"\x05\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    std::fs::write(
        d.join("w.toml"),
        "[[device]]\nname = \"cpu\"\nmemory = \"8gb\"\n\n[[model]]\nname = \"a\"\nfile = \"broken.safetensors\"\ncompute = \"cpu\"\n\n[[model]]\nname = \"b\"\nfile = \"broken.safetensors\"\ncompute = \"cpu\"\n",
    )
    .unwrap();
    let (err, json) = fails(&["compile", "w.toml"], d, 1, "broken.safetensors");
    assert_eq!(err.matches("EOF while parsing").count(), 1, "{err}");
    assert_eq!(json["errors"].as_array().unwrap().len(), 1);
    // An error about another file than the workflow has no place in it.
    assert!(json["errors"][0].get("span").is_none() && json["errors"][0].get("line").is_none());
}
