//! Every example workflow, with its models made header-only from inventories: it checks clean,
//! compiles to a plan (snapshotted, as JSON and as `explain` text), the same bytes every time,
//! and the plan reads back and places every tensor exactly once.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

mod common;

use std::path::{Path, PathBuf};

use common::mgc;
use mgc_plan::{Device, Plan};

/// A folder with every example workflow and the model files they use.
fn setup() -> (tempfile::TempDir, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let manifest = std::fs::read_to_string(root.join("examples/models.txt")).unwrap();
    for line in manifest.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let mut parts = line.split_whitespace();
        let (file, inventory) = (parts.next().unwrap(), parts.next().unwrap());
        let inventory = root.join(format!("tests/fixtures/models/{inventory}.json"));
        let out = models.join(file);
        let (code, _, err) =
            mgc(&["synth-model", inventory.to_str().unwrap(), "-o", out.to_str().unwrap()], dir.path());
        assert_eq!(code, 0, "{file}: {err}");
    }
    let mut examples: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    examples.sort();
    let names = examples
        .iter()
        .map(|example| {
            let name = example.file_name().unwrap().to_str().unwrap().to_owned();
            std::fs::copy(example, dir.path().join(&name)).unwrap();
            name
        })
        .collect();
    (dir, names)
}

#[test]
fn every_example_checks_clean() {
    let (dir, examples) = setup();
    assert!(examples.len() >= 6);
    for name in examples {
        let (code, out, err) = mgc(&["check", &name], dir.path());
        assert_eq!(code, 0, "{name}: {err}");
        insta::assert_snapshot!(format!("example__{name}"), out);
    }
}

/// The plan with each layer's tensor list replaced by its length, for review.
fn reviewable(plan: &Plan) -> serde_json::Value {
    let mut value = serde_json::to_value(plan).unwrap();
    for model in value["models"].as_array_mut().unwrap() {
        for layer in model["layers"].as_array_mut().unwrap() {
            let count = layer["tensors"].as_array().unwrap().len();
            layer["tensors"] = serde_json::json!(format!("[{count} tensors]"));
        }
    }
    value
}

#[test]
fn every_example_compiles_to_a_plan() {
    let (dir, examples) = setup();
    for name in examples {
        let stem = name.trim_end_matches(".toml");
        let plan_file = format!("{stem}.plan.json");
        let (code, out, err) = mgc(&["compile", &name, "-o", &plan_file], dir.path());
        assert_eq!(code, 0, "{name}: {err}");
        assert!(out.starts_with(&format!("wrote {plan_file}")));
        let first = std::fs::read_to_string(dir.path().join(&plan_file)).unwrap();

        // Deterministic: the same input gives the same bytes.
        let again = format!("{stem}.again.json");
        assert_eq!(mgc(&["compile", &name, "-o", &again], dir.path()).0, 0);
        assert!(
            first == std::fs::read_to_string(dir.path().join(&again)).unwrap(),
            "{name}: compile is not deterministic"
        );

        let plan = Plan::from_json(&first).unwrap();
        let back = plan.to_json();
        let differ = back.lines().zip(first.lines()).find(|(a, b)| a != b);
        assert!(back == first, "{name}: the plan does not read back to the same text: {differ:?}");
        for model in &plan.models {
            // Every tensor of the model's file sits in exactly one layer, and the layers add up.
            let input = &plan.inputs[model.input];
            let file = dir.path().join(&input.path);
            let inventory = mgc_compiler::inventory::file_to_inventory(&file).unwrap();
            let mut planned: Vec<&str> =
                model.layers.iter().flat_map(|l| l.tensors.iter().map(|t| t.name.as_str())).collect();
            planned.sort_unstable();
            let mut expected: Vec<&str> =
                inventory.tensors.iter().map(|t| t.name.as_str()).filter(|n| n.starts_with(&model.prefix)).collect();
            expected.sort_unstable();
            assert_eq!(planned, expected, "{name}/{}", model.name);
            assert_eq!(model.layers.iter().map(|l| l.bytes).sum::<u64>(), model.bytes);
            // Budgets are respected, except by the device that takes the rest.
            for budget in &model.budgets {
                let used: u64 = model.layers.iter().filter(|l| l.home == budget.device).map(|l| l.bytes).sum();
                assert_eq!(used, budget.used_bytes);
            }
            // Streamed means away from the compute device; every streamed layer has a copy.
            for layer in &model.layers {
                assert_eq!(layer.streamed, layer.home != model.compute);
            }
            let index = plan.models.iter().position(|m| m.name == model.name).unwrap();
            for layer in model.layers.iter().filter(|l| l.streamed) {
                let copies = plan
                    .transfers
                    .iter()
                    .filter(|t| t.model == index && t.first_layer <= layer.index && layer.index <= t.last_layer)
                    .count();
                assert_eq!(copies, 1, "{name}/{}: layer {} is copied {copies} times", model.name, layer.name);
            }
            assert!(
                model.predicted.step_seconds + 1e-12 >= model.predicted.lower_bound_seconds,
                "{name}/{}: step below its lower bound",
                model.name
            );
        }
        for device in &plan.devices {
            if device.name != Device::Disk {
                assert!(
                    device.peak_bytes <= device.memory_bytes - device.reserve_bytes,
                    "{name}: {} over its memory",
                    device.name
                );
            }
        }
        insta::assert_json_snapshot!(format!("plan__{stem}"), reviewable(&plan));
        let (code, explained, err) = mgc(&["explain", &plan_file], dir.path());
        assert_eq!(code, 0, "{err}");
        assert!(out.ends_with(&explained), "compile prints the explanation");
        insta::assert_snapshot!(format!("explain__{stem}"), explained);

        // The picture: a bar per device and a lane per copy stream.
        let svg_file = format!("{stem}.svg");
        let (code, _, err) = mgc(&["explain", &plan_file, "--svg", &svg_file], dir.path());
        assert_eq!(code, 0, "{err}");
        let svg = std::fs::read_to_string(dir.path().join(&svg_file)).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for device in plan.devices.iter().filter(|d| d.name != Device::Disk) {
            assert!(svg.contains(&format!(">{}</text>", device.name)), "{name}: no bar for {}", device.name);
        }
        let mut streams: Vec<Device> = plan.transfers.iter().map(|t| t.from).collect();
        streams.sort_unstable();
        streams.dedup();
        for stream in streams {
            assert!(svg.contains(&format!("copy {stream} →")), "{name}: no lane for {stream}");
        }
    }
}

/// Every stage of the compiler, printed by `mgc explain --stage` for every example: the graph
/// and what each stage adds to it. The last stage's form is the plan itself.
#[test]
fn every_stage_of_every_example_prints() {
    let (dir, examples) = setup();
    for name in examples {
        let stem = name.trim_end_matches(".toml");
        let mut forms = Vec::new();
        for stage in ["graph", "budgets", "placement", "schedule", "peaks", "plan"] {
            let (code, out, err) = mgc(&["explain", &name, "--stage", stage], dir.path());
            assert_eq!(code, 0, "{name} --stage {stage}: {err}");
            forms.push((stage, serde_json::from_str::<serde_json::Value>(&out).unwrap(), out));
        }
        let form = |stage: &str| &forms.iter().find(|(s, _, _)| *s == stage).unwrap().1;

        // The graph orders every layer of every model; the schedule adds one node per copy, with
        // a data-ready edge to the first layer it carries.
        let graph = form("graph");
        let layers: usize =
            graph["models"].as_array().unwrap().iter().map(|m| m["layers"].as_array().unwrap().len()).sum();
        assert_eq!(graph["nodes"].as_array().unwrap().len(), layers, "{name}: graph nodes");
        let next = graph["edges"].as_array().unwrap().iter().filter(|e| e[2] == "next").count();
        let models = graph["models"].as_array().unwrap().len();
        assert_eq!(next, layers - models, "{name}: each layer but the last of a model has a next");
        let plan = form("plan");
        assert_eq!(
            form("schedule")["copies"].as_array().unwrap().len(),
            plan["transfers"].as_array().unwrap().len(),
            "{name}: one copy node per transfer"
        );
        // The plan stage is what `mgc compile` writes, and the workflow explains as its plan does.
        let plan_file = format!("{stem}.plan.json");
        assert_eq!(mgc(&["compile", &name, "-o", &plan_file], dir.path()).0, 0);
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(&plan_file)).unwrap()).unwrap();
        assert_eq!(plan["devices"], written["devices"], "{name}");
        assert_eq!(plan["transfers"], written["transfers"], "{name}");
        let from_plan = mgc(&["explain", &plan_file], dir.path()).1;
        let from_workflow = mgc(&["explain", &name], dir.path()).1;
        assert_eq!(from_plan, from_workflow, "{name}");
        // A plan has no stages left to show.
        let (code, _, err) = mgc(&["explain", &plan_file, "--stage", "graph"], dir.path());
        assert_eq!(code, 1);
        assert!(err.contains("is a plan"), "{err}");

        for (stage, _, text) in forms.iter().filter(|(s, _, _)| *s != "plan") {
            insta::assert_snapshot!(format!("stage__{stem}__{stage}"), text);
        }
    }
}
