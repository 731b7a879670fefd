//! `mgc sweep`: the predicted step of a model as its compute device holds more of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

mod common;

use common::{mgc, with_flux};

/// A Flux and a workflow that puts 8 GiB of it on a 24 GB GPU, the rest in RAM.
fn flux_workflow() -> tempfile::TempDir {
    let dir = with_flux();
    std::fs::write(
        dir.path().join("flux.toml"),
        "[[device]]\nname = \"cuda:0\"\nmemory = \"24gb\"\nreserve = \"1gb\"\n\n[[device]]\nname = \"cpu\"\nmemory = \"64gb\"\n\n\
         [[model]]\nname = \"flux\"\nfile = \"flux.safetensors\"\ncompute = \"cuda:0\"\nallocation = \"cuda:0,8gb;cpu,*\"\n",
    )
    .unwrap();
    dir
}

#[test]
fn a_sweep_goes_from_nothing_to_the_whole_model_and_names_its_knee() {
    let dir = flux_workflow();
    let (code, out, err) = mgc(&["sweep", "flux.toml", "--model", "flux", "--format", "json"], dir.path());
    assert_eq!(code, 0, "{err}");
    let sweep: serde_json::Value = serde_json::from_str(&out).unwrap();
    let points = sweep["points"].as_array().unwrap();
    assert_eq!(points.len(), 12);
    assert_eq!(points[0]["budget_bytes"], 0);
    assert_eq!(points[11]["budget_bytes"], sweep["model_bytes"]);
    let mut fitting = Vec::new();
    for pair in points.windows(2) {
        assert!(pair[0]["budget_bytes"].as_u64() < pair[1]["budget_bytes"].as_u64());
    }
    for p in points {
        let budget = p["budget_bytes"].as_u64().unwrap();
        assert!(p["resident_bytes"].as_u64().unwrap() <= budget, "resident within the budget");
        match p["step_seconds"].as_f64() {
            Some(step) => {
                assert!(step + 1e-12 >= p["lower_bound_seconds"].as_f64().unwrap());
                assert!(p["peak_bytes"].as_u64().unwrap() <= 23 << 30, "a fitting plan fits the GPU");
                fitting.push((budget, step));
            }
            None => assert!(p["problem"].as_str().unwrap().contains("short"), "{p}"),
        }
    }
    // Streaming the whole model is the slowest; the knee is the first budget within 1% of the best.
    let (first, best) = (fitting[0].1, fitting.iter().map(|f| f.1).fold(f64::INFINITY, f64::min));
    assert!(best < first, "streaming everything is the slowest");
    let knee = sweep["knee_bytes"].as_u64().unwrap();
    let at_knee = fitting.iter().find(|f| f.0 == knee).unwrap().1;
    assert!(at_knee <= best * 1.01);
    assert!(fitting.iter().filter(|f| f.0 < knee).all(|f| f.1 > best * 1.01), "the knee is the first that fast");

    // The same sweep for people, and its picture.
    let (code, text, _) = mgc(&["sweep", "flux.toml", "-m", "flux", "--svg", "sweep.svg"], dir.path());
    assert_eq!(code, 0);
    assert!(text.contains("a step of `flux` gets no faster"), "{text}");
    insta::assert_snapshot!(text);
    let svg = std::fs::read_to_string(dir.path().join("sweep.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<circle").count() == fitting.len());
}

#[test]
fn a_sweep_between_given_sizes_and_its_mistakes() {
    let dir = flux_workflow();
    let (code, out, err) = mgc(
        &["sweep", "flux.toml", "-m", "flux", "--from", "4gb", "--to", "8gb", "--points", "3", "--format", "json"],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    let sweep: serde_json::Value = serde_json::from_str(&out).unwrap();
    let budgets: Vec<u64> =
        sweep["points"].as_array().unwrap().iter().map(|p| p["budget_bytes"].as_u64().unwrap()).collect();
    assert_eq!(budgets, vec![4 << 30, 6 << 30, 8 << 30]);
    let (code, _, err) = mgc(&["sweep", "flux.toml", "-m", "unet"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("has no model `unet`"), "{err}");
    let (code, _, err) = mgc(&["sweep", "flux.toml", "-m", "flux", "--to", "8gigs"], dir.path());
    assert_eq!(code, 2, "a size clap refuses is a usage error");
    assert!(err.contains("8gigs"), "{err}");
}
