//! `mgc check`: allocation strings and workflow files, valid and broken, as a user sees them.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

mod common;

use common::mgc;
use std::path::Path;

#[test]
fn allocation_corpus() {
    let corpus =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/allocations.txt")).unwrap();
    let cases: Vec<&str> = corpus.lines().filter(|l| !l.starts_with("# ") && !l.is_empty()).collect();
    assert!(cases.len() >= 40, "the corpus has {} strings", cases.len());
    let mut names = std::collections::BTreeSet::new();
    for case in &cases {
        assert!(names.insert(snapshot_name(case).to_lowercase()), "two corpus strings share the name of `{case}`");
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    for case in &cases {
        let (code, out, err) = mgc(&["check", "--allocation", case], here);
        let (json_code, json, json_err) = mgc(&["check", "--allocation", case, "--format", "json"], here);
        assert_eq!(code, json_code, "{case}");
        assert!(code == 0 || code == 1, "{case}: exit {code}");
        assert!(json_err.is_empty(), "{case}: {json_err}");
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        if code == 0 {
            assert!(parsed["mode"].is_string(), "{case}");
            assert!(err.is_empty());
        } else {
            // Every error's span is a valid range of the input.
            for error in parsed["errors"].as_array().unwrap() {
                let (start, end) =
                    (error["span"][0].as_u64().unwrap() as usize, error["span"][1].as_u64().unwrap() as usize);
                assert!(start <= end && end <= case.len(), "{case}: span {start}..{end}");
            }
        }
        let text = format!("$ mgc check --allocation '{case}'\nexit {code}\n{out}{err}\n$ ... --format json\n{json}");
        insta::with_settings!({ description => *case, omit_expression => true }, {
            insta::assert_snapshot!(format!("allocation@{}", snapshot_name(case)), text);
        });
    }
}

/// A snapshot's name from the string it holds, so that adding, removing or reordering corpus lines
/// renames nothing: every character is kept or spelled out, no two strings share a name.
fn snapshot_name(case: &str) -> String {
    let mut name = String::new();
    for c in case.chars() {
        match c {
            'a'..='z' | '0'..='9' | '.' => name.push(c),
            'A'..='Z' => {
                name.push('^');
                name.push(c.to_ascii_lowercase());
            }
            ':' => name.push('-'),
            ',' => name.push('_'),
            ';' => name.push('~'),
            ' ' => name.push('+'),
            '*' => name.push_str("star"),
            '%' => name.push_str("pct"),
            other => name.push_str(&format!("x{:02x}", u32::from(other))),
        }
    }
    name
}

/// The figures `mgc check` reads from the machine it runs on (the CPU's RAM when a workflow leaves
/// it undeclared) differ between machines, so snapshots hold a placeholder instead.
fn without_detected_figures(text: &str) -> String {
    text.lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [device, _, unit, .., "detected"] if unit.ends_with('B') => {
                    format!("  {device:<10} {:>12}  {:<20} detected", "[memory]", "")
                }
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

#[test]
fn workflow_corpus() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workflows");
    insta::glob!("workflows/*.toml", |path| {
        let name = path.file_name().unwrap().to_str().unwrap();
        let (code, out, err) = mgc(&["check", name], &here);
        let (json_code, json, _) = mgc(&["check", name, "--format", "json"], &here);
        assert_eq!(code, json_code);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        if name.starts_with("ok-") {
            assert_eq!(code, 0, "{name}: {err}");
        } else {
            assert_eq!(code, 1, "{name}: {out}");
            let source = std::fs::read_to_string(path).unwrap();
            for error in parsed["errors"].as_array().unwrap() {
                let end = error["span"][1].as_u64().unwrap() as usize;
                assert!(end <= source.len(), "{name}: span past the file");
            }
        }
        insta::assert_snapshot!(without_detected_figures(&format!("exit {code}\n{out}{err}")));
    });
}

#[test]
fn help_is_stable() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    for args in [&["--help"][..], &["check", "--help"], &["inspect", "--help"]] {
        let (code, out, _) = mgc(args, here);
        assert_eq!(code, 0);
        insta::assert_snapshot!(format!("help_{}", args.join("_").trim_start_matches("--")), out);
    }
}

#[test]
fn usage_errors_exit_2() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(mgc(&["check"], here).0, 2);
    assert_eq!(mgc(&["frobnicate"], here).0, 2);
    assert_eq!(mgc(&["check", "does-not-exist.toml"], here).0, 1);
}

#[test]
fn detected_figures_are_filtered_whatever_the_machine() {
    let one = "  cpu           23.54 GiB                       detected\n";
    let other = "  cpu          125.70 GiB  reserve 1.00 GiB     detected\n";
    assert_eq!(without_detected_figures(one), without_detected_figures(other));
    let declared = "  cuda:0        16.00 GiB                       declared\n";
    assert_eq!(without_detected_figures(declared), declared);
}
