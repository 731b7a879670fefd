//! `mgc-run` with real libtorch on the CPU: a small generated model (real random weights) run under
//! different plans — all resident, streamed from the file with prefetch, batched — computes the
//! same bits; stale plans, missing devices, too little memory and unknown versions are refused; a
//! GGUF model runs quantized under any plan. On CUDA too, where the driver finds a GPU.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

#[path = "../../runtime/tests/common/gguf_fixture.rs"]
mod gguf_fixture;

use std::path::Path;
use std::process::Command;

use gguf_fixture::gguf_fixture;

use mgc_compiler::compile::toml_to_plan;
use mgc_compiler::inventory::synth::{Fill, InventoryFixture, write_model};
use mgc_core::Hardware;

/// `mgc-run`; `MGC_RUN` names another build of it (this test run where it was not built).
fn mgc_run() -> String {
    std::env::var("MGC_RUN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mgc-run").to_owned())
}

/// CUDA devices, as the driver sees them (this test process does not load libtorch).
fn cuda_count() -> usize {
    mgc_devices::detect().devices.iter().filter(|f| matches!(f.device, mgc_core::Device::Cuda(_))).count()
}

fn has_cuda() -> bool {
    cuda_count() > 0
}

fn model(dir: &Path) {
    let inventory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tiny_flux.json");
    let fixture: InventoryFixture = serde_json::from_str(&std::fs::read_to_string(inventory).unwrap()).unwrap();
    write_model(&fixture, "", &dir.join("tiny.safetensors"), Fill::Random { seed: 7 }).unwrap();
}

/// Compiles a CPU workflow for the tiny model and writes its plan.
fn plan(dir: &Path, name: &str, allocation: &str, prefetch: &str, batch_below: &str) -> String {
    plan_on(dir, name, "cpu", allocation, prefetch, batch_below)
}

/// Compiles a workflow computing on `compute` (`cpu` or `cuda:0`) and writes its plan.
fn plan_on(dir: &Path, name: &str, compute: &str, allocation: &str, prefetch: &str, batch_below: &str) -> String {
    let gpu = if compute == "cpu" { "" } else { "[[device]]\nname = \"cuda:0\"\nmemory = \"4gb\"\n" };
    let workflow = format!(
        "[[device]]\nname = \"cpu\"\nmemory = \"4gb\"\n{gpu}[[model]]\nname = \"tiny\"\nfile = \"tiny.safetensors\"\ncompute = \"{compute}\"\nallocation = \"{allocation}\"\n[workload]\ntokens = 64\n[schedule]\nprefetch = {prefetch}\nbatch_below = \"{batch_below}\"\n"
    );
    let plan = toml_to_plan(&workflow, dir, &Hardware::default).unwrap();
    let file = format!("{name}.plan.json");
    let mut text = plan.to_json();
    // Model paths in plans are relative to the plan's folder.
    text = text.replace(&dir.join("tiny.safetensors").display().to_string(), "tiny.safetensors");
    std::fs::write(dir.join(&file), text).unwrap();
    file
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    // `MGC_RUN` names another build of the binary (this test run where it was not built).
    let binary = mgc_run();
    let output = Command::new(binary).args(args).current_dir(dir).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

#[test]
fn every_plan_of_a_model_computes_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    model(dir.path());
    let plans = [
        plan(dir.path(), "resident", "cpu,*", "\"auto\"", "32mb"),
        plan(dir.path(), "streamed", "cpu,40%;disk,*", "1", "1kb"),
        plan(dir.path(), "batched", "cpu,20%;disk,*", "2", "64mb"),
        plan(dir.path(), "disk", "disk,*", "3", "1kb"),
    ];
    let mut checksums = Vec::new();
    for file in &plans {
        let (code, out, err) = run(dir.path(), &["run", file, "--steps", "2", "--format", "json"]);
        assert_eq!(code, 0, "{file}: {err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["steps"].as_array().unwrap().len(), 2);
        assert!(report["measured_step_seconds"].as_f64().unwrap() > 0.0);
        assert!(report["predicted_step_seconds"].as_f64().unwrap() > 0.0);
        assert!(report["hidden_copy_fraction"].as_f64().unwrap() <= 1.0);
        let cpu = report["devices"].as_array().unwrap().iter().find(|d| d["name"] == "cpu").unwrap();
        assert!(cpu["peak_bytes_predicted"].as_u64().unwrap() > 0);
        let plan: mgc_plan::Plan =
            mgc_plan::Plan::from_json(&std::fs::read_to_string(dir.path().join(file)).unwrap()).unwrap();
        let streamed: u64 = plan.transfers.iter().map(|t| t.bytes).sum();
        let copied: u64 = report["links"].as_array().unwrap().iter().map(|l| l["bytes"].as_u64().unwrap()).sum();
        assert_eq!(copied, streamed * 2, "{file}: every streamed byte is copied once a step");
        checksums.push(report["models"][0]["checksum"].as_str().unwrap().to_owned());
    }
    assert!(checksums.windows(2).all(|w| w[0] == w[1]), "outputs differ between plans: {checksums:?}");
    // The human report says what it measures.
    let (code, out, _) = run(dir.path(), &["run", &plans[1], "--steps", "2"]);
    assert_eq!(code, 0);
    assert!(out.contains("measured") && out.contains("predicted") && out.contains("disk -> cpu"), "{out}");
}

/// On a GPU: layers streamed from RAM (one pinned buffer per transfer), batched, and read from the
/// file (through the staging buffer) reach the compute device on the copy stream and compute the
/// same bits as the all-resident plan; so do libtorch's own copies.
#[test]
fn on_cuda_every_plan_and_copy_engine_computes_the_same_bits() {
    if !has_cuda() {
        eprintln!("skipped: no CUDA device here; this test runs where there is one");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    model(dir.path());
    let runs = [
        (plan_on(dir.path(), "resident", "cuda:0", "cuda:0,*", "\"auto\"", "32mb"), "streams"),
        (plan_on(dir.path(), "ram", "cuda:0", "cuda:0,30%;cpu,*", "2", "1kb"), "streams"),
        (plan_on(dir.path(), "batched", "cuda:0", "cuda:0,20%;cpu,*", "2", "64mb"), "streams"),
        (plan_on(dir.path(), "file", "cuda:0", "cuda:0,20%;disk,*", "1", "1kb"), "streams"),
        (plan_on(dir.path(), "ram-torch", "cuda:0", "cuda:0,30%;cpu,*", "2", "1kb"), "torch"),
    ];
    let mut checksums = Vec::new();
    for (file, copies) in &runs {
        let (code, out, err) = run(dir.path(), &["run", file, "--steps", "3", "--format", "json", "--copies", copies]);
        assert_eq!(code, 0, "{file} ({copies}): {err}{out}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        let plan = mgc_plan::Plan::from_json(&std::fs::read_to_string(dir.path().join(file)).unwrap()).unwrap();
        let streamed: u64 = plan.transfers.iter().map(|t| t.bytes).sum();
        let copied: u64 = report["links"].as_array().unwrap().iter().map(|l| l["bytes"].as_u64().unwrap()).sum();
        assert_eq!(copied, streamed * 3, "{file}: every streamed byte is copied once a step");
        let gpu = report["devices"].as_array().unwrap().iter().find(|d| d["name"] == "cuda:0").unwrap();
        assert!(gpu["peak_bytes_measured"].as_u64().is_some(), "{file}: {gpu}");
        eprintln!(
            "{file} ({copies}): step {:.5} s, predicted {:.5} s, copies hidden {:.0}%",
            report["measured_step_seconds"].as_f64().unwrap(),
            report["predicted_step_seconds"].as_f64().unwrap(),
            report["hidden_copy_fraction"].as_f64().unwrap() * 100.0
        );
        checksums.push(report["models"][0]["checksum"].as_str().unwrap().to_owned());
    }
    assert!(checksums.windows(2).all(|w| w[0] == w[1]), "outputs differ between plans: {checksums:?}");
}

#[test]
fn stale_or_foreign_plans_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    model(dir.path());
    let file = plan(dir.path(), "ok", "cpu,50%;disk,*", "1", "1kb");
    let text = std::fs::read_to_string(dir.path().join(&file)).unwrap();

    let refuse = |name: &str, text: String, expect: &str| {
        std::fs::write(dir.path().join(name), text).unwrap();
        let (code, out, err) = run(dir.path(), &["run", name]);
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(err.contains(expect), "{name}: expected `{expect}` in {err}");
        assert!(!err.contains("panicked"));
    };
    refuse(
        "version.json",
        text.replacen("\"format_version\":1", "\"format_version\":2", 1),
        "version 2 is not supported",
    );
    refuse("garbage.json", "{\"format_version\": 1, \"devices\": 3}".into(), "damaged");
    let mut huge = mgc_plan::Plan::from_json(&text).unwrap();
    huge.devices[0].peak_bytes = 1 << 60;
    refuse("huge.json", huge.to_json(), "short");
    let mut gpu = mgc_plan::Plan::from_json(&text).unwrap();
    let mut device = gpu.devices[0].clone();
    device.name = mgc_plan::Device::Cuda(3);
    gpu.devices.push(device);
    if cuda_count() < 4 {
        refuse("gpu.json", gpu.to_json(), "the plan needs `cuda:3`");
    }
    let mut mps = mgc_plan::Plan::from_json(&text).unwrap();
    mps.devices[0].name = mgc_plan::Device::Mps;
    refuse("mps.json", mps.to_json(), "this runtime drives `cpu` and `cuda:N`");

    // The model file changes after compile: a byte more, then a header byte changed.
    let model = dir.path().join("tiny.safetensors");
    let original = std::fs::read(&model).unwrap();
    let mut longer = original.clone();
    longer.push(0);
    std::fs::write(&model, &longer).unwrap();
    refuse("ok2.json", text.clone(), "changed since the plan was compiled");
    let mut edited = original.clone();
    edited[20] ^= 1;
    std::fs::write(&model, &edited).unwrap();
    refuse("ok3.json", text.clone(), "its header is not the one");
    std::fs::remove_file(&model).unwrap();
    refuse("ok4.json", text, "cannot read");
}

#[test]
fn probe_writes_a_profile_the_compiler_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(dir.path(), &["probe", "-o", "hw.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cpu matmul BF16") && out.contains("host memcpy"), "{out}");
    let text = std::fs::read_to_string(dir.path().join("hw.toml")).unwrap();
    let profile = mgc_core::profile::Profile::from_toml(&text).unwrap();
    let cpu = profile.flops(mgc_core::Device::Cpu).unwrap();
    assert!(cpu > 1e8, "a CPU does more than 0.1 GFLOP/s: {cpu}");
    assert!(profile.disk_read().unwrap() > 1e6);
    if has_cuda() {
        assert!(profile.rate(mgc_core::Device::Cpu, mgc_core::Device::Cuda(0)).is_some());
    } else {
        eprintln!("no CUDA device: probed the CPU only (GPU figures skipped)");
    }
}

#[test]
fn a_gguf_model_runs_quantized_under_any_plan() {
    runs_under_plans("cpu", &[("resident", "cpu,*"), ("streamed", "cpu,30%;disk,*")]);
}

#[test]
fn on_cuda_a_gguf_model_runs_quantized_under_any_plan() {
    if !has_cuda() {
        eprintln!("skipped: no CUDA device here; this test runs where there is one");
        return;
    }
    runs_under_plans(
        "cuda:0",
        &[("resident", "cuda:0,*"), ("streamed", "cuda:0,30%;cpu,*"), ("file", "cuda:0,30%;disk,*")],
    );
}

fn runs_under_plans(compute: &str, plans: &[(&str, &str)]) {
    let dir = gguf_fixture();
    let mut checksums = Vec::new();
    let gpu = if compute == "cpu" { "" } else { "[[device]]\nname = \"cuda:0\"\nmemory = \"2gb\"\n" };
    for &(name, allocation) in plans {
        let workflow = format!(
            "[[device]]\nname = \"cpu\"\nmemory = \"2gb\"\n{gpu}[[model]]\nname = \"q\"\nfile = \"quant.gguf\"\ncompute = \"{compute}\"\nallocation = \"{allocation}\"\n[workload]\ntokens = 16\n[schedule]\nprefetch = 1\nbatch_below = \"1kb\"\n"
        );
        let plan = toml_to_plan(&workflow, dir.path(), &Hardware::default).unwrap();
        let text = plan.to_json().replace(&dir.path().join("quant.gguf").display().to_string(), "quant.gguf");
        std::fs::write(dir.path().join(format!("{name}.json")), text).unwrap();
        let binary = mgc_run();
        let out = Command::new(binary)
            .args(["run", &format!("{name}.json"), "--steps", "2", "--format", "json"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if name != "resident" {
            // Quantized on the wire: the bytes copied are the file's, not dequantized ones.
            let plan =
                mgc_plan::Plan::from_json(&std::fs::read_to_string(dir.path().join(format!("{name}.json"))).unwrap())
                    .unwrap();
            let copied: u64 = report["links"].as_array().unwrap().iter().map(|l| l["bytes"].as_u64().unwrap()).sum();
            let steps = report["models"][0]["steps"].as_array().unwrap().len() as u64;
            assert_eq!(copied, steps * plan.transfers.iter().map(|t| t.bytes).sum::<u64>());
            assert!(copied > 0);
        }
        checksums.push(report["models"][0]["checksum"].as_str().unwrap().to_owned());
    }
    assert!(checksums.windows(2).all(|w| w[0] == w[1]), "outputs differ between plans: {checksums:?}");
}

/// `--steps N` runs N steps of every model but text encoders and VAEs (a model of unknown role
/// steps), reports the first apart as the warm-up, and says why a model ran fewer steps.
#[test]
fn steps_run_for_every_main_model_and_the_first_is_the_warm_up() {
    let dir = tempfile::tempdir().unwrap();
    model(dir.path());
    let file = plan(dir.path(), "resident", "cpu,*", "\"auto\"", "32mb");
    let text = std::fs::read_to_string(dir.path().join(&file)).unwrap();
    let with_role = |role: &str| {
        let mut plan: serde_json::Value = serde_json::from_str(&text).unwrap();
        plan["models"][0]["role"] = serde_json::Value::from(role);
        let name = format!("{role}.plan.json");
        std::fs::write(dir.path().join(&name), serde_json::to_string(&plan).unwrap()).unwrap();
        name
    };
    let report = |file: &str, steps: &str| {
        let (code, out, err) = run(dir.path(), &["run", file, "--steps", steps, "--format", "json"]);
        assert_eq!(code, 0, "{file}: {err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    for role in ["unknown", "diffusion"] {
        let r = report(&with_role(role), "3");
        let model = &r["models"][0];
        let steps: Vec<f64> =
            model["steps"].as_array().unwrap().iter().map(|s| s["seconds"].as_f64().unwrap()).collect();
        assert_eq!(steps.len(), 3, "a model of role {role} steps");
        assert_eq!(model["warmup_seconds"].as_f64(), Some(steps[0]), "the first step is the warm-up");
        // Two steps after it: no tenth to leave out, their mean.
        let mean = (steps[1] + steps[2]) / 2.0;
        let measured = model["measured_step_seconds"].as_f64().unwrap();
        assert!((measured - mean).abs() < 1e-12, "the mean of the steps after it: {measured} against {mean}");
        // No note of the steps (the machine's check may note that this machine is not the
        // default figures': that depends on the machine).
        let step_notes = r["notes"].as_array().unwrap().iter().filter(|n| !n.to_string().contains("computed"));
        assert_eq!(step_notes.count(), 0, "{r}");
        assert_eq!(r["steps_asked"], 3);
    }
    for (role, why) in [("text-encoder", "a text encoder runs once per prompt"), ("vae", "a VAE runs once per image")] {
        let r = report(&with_role(role), "3");
        assert_eq!(r["models"][0]["steps"].as_array().unwrap().len(), 1, "a {role} runs once");
        let notes = r["notes"].to_string();
        assert!(notes.contains("ran 1 of the 3 steps asked") && notes.contains(why), "{notes}");
    }
    // One step: its time includes the warm-up, and the report says so, for people too.
    let one = with_role("unknown");
    let notes = report(&one, "1")["notes"].to_string();
    assert!(notes.contains("includes the first step's warm-up"), "{notes}");
    let (code, out, _) = run(dir.path(), &["run", &one, "--steps", "1"]);
    assert_eq!(code, 0);
    assert!(out.contains("warm-up") && out.contains("note: `tiny` ran one step"), "{out}");
    let (code, _, err) = run(dir.path(), &["run", &one, "--steps", "0"]);
    assert_eq!(code, 2, "no steps is a bad command line: {err}");
    assert!(err.contains("--steps"), "{err}");
}

/// After the steps, a run times each compute device's matmul figure again, as the probe measured
/// the one the plan gives it, and says when the machine is not the one the plan's figures
/// describe: a plan that expects far more than any machine computes, or far less; from figures
/// measured or declared, or from the built-in defaults (then it says so, and how to measure).
#[test]
fn a_run_checks_the_machine_against_its_plans_figures() {
    let dir = tempfile::tempdir().unwrap();
    model(dir.path());
    let file = plan(dir.path(), "resident", "cpu,*", "\"auto\"", "32mb");
    let text = std::fs::read_to_string(dir.path().join(&file)).unwrap();
    let cases = [
        ("fast.plan.json", 1e18, false, "slower now"),
        ("slow.plan.json", 1.0, false, "faster now"),
        ("default.plan.json", 1e18, true, "built-in defaults"),
    ];
    for (name, planned, defaults, says) in cases {
        let mut plan: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(plan["run"]["basis"].as_str().unwrap().contains("for `cpu`"), "compiled without a profile");
        plan["devices"][0]["flops_per_second"] = serde_json::Value::from(planned);
        if !defaults {
            // As the compiler writes a plan made with measured or declared figures.
            plan["run"]["basis"] = serde_json::Value::from("measured or declared figures");
            plan["run"].as_object_mut().unwrap().remove("uncertainty");
        }
        std::fs::write(dir.path().join(name), serde_json::to_string(&plan).unwrap()).unwrap();
        let (code, out, err) = run(dir.path(), &["run", name, "--steps", "2", "--format", "json"]);
        assert_eq!(code, 0, "{name}: {err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        let machine = r["machine"].as_array().unwrap();
        assert_eq!(machine.len(), 1, "one compute device: {r}");
        assert_eq!(machine[0]["device"], "cpu");
        assert_eq!(machine[0]["planned_flops_per_second"].as_f64(), Some(planned));
        assert_eq!(machine[0]["planned_from_defaults"].as_bool(), Some(defaults), "{name}");
        let measured = machine[0]["measured_flops_per_second"].as_f64().unwrap();
        assert!(measured > 1.0 && measured < 1e18, "{name}: measured {measured}");
        assert!(machine[0]["what"].as_str().unwrap().contains("BF16 product"), "{r}");
        let notes = r["notes"].to_string();
        assert!(notes.contains("cpu computed") && notes.contains(says), "{name}: {notes}");

        let (code, out, _) = run(dir.path(), &["run", name, "--steps", "2"]);
        assert_eq!(code, 0);
        assert!(out.contains("timed after the steps") && out.contains("plan's figure"), "{out}");
        assert!(out.contains("note: cpu computed") && out.contains(says), "{out}");
    }
}

/// Every predicted peak holds the runtime's own memory: what a run measures never exceeds it,
/// with the compiler's default for it and with the figure a probe measured.
#[test]
fn measured_peaks_never_exceed_predicted() {
    let dir = tempfile::tempdir().unwrap();
    model(dir.path());
    let (code, _, err) = run(dir.path(), &["probe", "-o", "hw.toml"]);
    assert_eq!(code, 0, "{err}");
    let profile = mgc_core::profile::Profile::from_toml(&std::fs::read_to_string(dir.path().join("hw.toml")).unwrap());
    // The probe measures what a norm holds a byte of its input.
    let per_byte = profile.unwrap().norm_workspace(mgc_core::Device::Cpu).unwrap();
    let plans = [
        plan(dir.path(), "resident", "cpu,*", "\"auto\"", "32mb"),
        plan(dir.path(), "streamed", "cpu,40%;disk,*", "1", "1kb"),
        plan_with_profile(dir.path(), "resident-probed", "cpu,*", "hw.toml"),
        plan_with_profile(dir.path(), "streamed-probed", "cpu,40%;disk,*", "hw.toml"),
    ];
    for file in &plans {
        let (code, out, err) = run(dir.path(), &["run", file, "--steps", "3", "--format", "json"]);
        assert_eq!(code, 0, "{file}: {err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        let cpu = report["devices"].as_array().unwrap().iter().find(|d| d["name"] == "cpu").unwrap();
        let measured = cpu["peak_bytes_measured"].as_u64().unwrap();
        let predicted = cpu["peak_bytes_predicted"].as_u64().unwrap();
        assert!(measured <= predicted, "{file}: measured {measured} over predicted {predicted}");
        let plan: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(file)).unwrap()).unwrap();
        let source = plan["devices"][0]["runtime_source"].as_str().unwrap();
        assert_eq!(source, if file.contains("probed") { "profile" } else { "default" }, "{file}");
        // The products whose kernels the plan counts are the ones the run computed, shape for shape.
        let counted = plan["devices"][0]["distinct_products"].as_u64();
        assert_eq!(counted.is_some(), file.contains("probed"), "{file}: counted where the profile measured them");
        assert_eq!(cpu["distinct_products_predicted"].as_u64(), counted, "{file}");
        if let Some(counted) = counted {
            assert!(counted > 5, "{file}: the tiny Flux computes many shapes, counted {counted}");
            assert_eq!(cpu["distinct_products"].as_u64(), Some(counted), "{file}");
        }
        // So is the largest norm, whose temporaries the allocator keeps: the plan counts the one
        // the run computed, and what it holds at the probe's figure a byte of its input.
        let largest = plan["devices"][0]["largest_norm_bytes"].as_u64();
        assert_eq!(largest.is_some(), file.contains("probed"), "{file}: counted where the profile measured a norm");
        assert_eq!(cpu["largest_norm_bytes_predicted"].as_u64(), largest, "{file}");
        if let Some(largest) = largest {
            assert_eq!(cpu["largest_norm_bytes"].as_u64(), Some(largest), "{file}: the norm the run computed");
            // The tiny Flux has no quantized weights: its workspace is its largest norm's.
            assert_eq!(plan["devices"][0]["largest_dequantized_weights"].as_u64(), Some(0), "{file}");
            let workspace = plan["devices"][0]["workspace_bytes"].as_u64().unwrap();
            assert_eq!(workspace, ((largest as f64 * per_byte).ceil() as u64).div_ceil(4096) * 4096, "{file}");
        }
    }
}

/// A GGUF model computing on the CPU with a probed profile: its weights are dequantized as its
/// layers run, and the plan counts what the largest of them holds while it is.
#[test]
fn a_gguf_models_peak_counts_its_dequantized_weights() {
    let dir = gguf_fixture();
    let (code, _, err) = run(dir.path(), &["probe", "-o", "hw.toml"]);
    assert_eq!(code, 0, "{err}");
    let workflow = "profile = \"hw.toml\"\n[[device]]\nname = \"cpu\"\nmemory = \"2gb\"\n[[model]]\nname = \"q\"\nfile = \"quant.gguf\"\ncompute = \"cpu\"\nallocation = \"cpu,*\"\n[workload]\ntokens = 16\n";
    let plan = toml_to_plan(workflow, dir.path(), &Hardware::default).unwrap();
    let quantized = plan.models[0].layers.iter().flat_map(|l| &l.tensors).filter(|t| t.dtype.starts_with('Q'));
    let largest = quantized.map(|t| t.shape.iter().product::<u64>()).max().unwrap();
    let device = &plan.devices[0];
    assert_eq!(device.largest_dequantized_weights, Some(largest));
    assert!(device.workspace_bytes.unwrap() >= largest * 4, "at least the 32-bit values a weight dequantizes to");
    let text = plan.to_json().replace(&dir.path().join("quant.gguf").display().to_string(), "quant.gguf");
    std::fs::write(dir.path().join("q.json"), text).unwrap();
    let (code, out, err) = run(dir.path(), &["run", "q.json", "--steps", "3", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let cpu = &report["devices"][0];
    assert!(cpu["peak_bytes_measured"].as_u64().unwrap() <= cpu["peak_bytes_predicted"].as_u64().unwrap(), "{cpu}");
}

/// Compiles the tiny CPU workflow with a hardware profile and writes its plan.
fn plan_with_profile(dir: &Path, name: &str, allocation: &str, profile: &str) -> String {
    let workflow = format!(
        "profile = \"{profile}\"\n[[device]]\nname = \"cpu\"\nmemory = \"4gb\"\n[[model]]\nname = \"tiny\"\nfile = \"tiny.safetensors\"\ncompute = \"cpu\"\nallocation = \"{allocation}\"\n[workload]\ntokens = 64\n[schedule]\nprefetch = 1\n"
    );
    let plan = toml_to_plan(&workflow, dir, &Hardware::default).unwrap();
    let file = format!("{name}.plan.json");
    let text = plan.to_json().replace(&dir.join("tiny.safetensors").display().to_string(), "tiny.safetensors");
    std::fs::write(dir.join(&file), text).unwrap();
    file
}
