//! `mgc compile` refusals — each a clear error with the shortfall, exit code 1 — atomic writes,
//! and `mgc schema`.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

mod common;

use common::{mgc, with_flux};
use mgc_plan::Device;
use std::path::Path;
use std::process::Command;

fn workflow(gpu_memory: &str, reserve: &str, allocation: &str) -> String {
    format!(
        "[[device]]\nname = \"cuda:0\"\nmemory = \"{gpu_memory}\"\nreserve = \"{reserve}\"\n\n[[device]]\nname = \"cuda:1\"\nmemory = \"12gb\"\n\n[[device]]\nname = \"cpu\"\nmemory = \"64gb\"\n\n[[model]]\nname = \"flux\"\nfile = \"flux.safetensors\"\ncompute = \"cuda:0\"\nallocation = \"{allocation}\"\n"
    )
}

/// Writes `NAME.toml` with `text` into `dir`, compiles it (which must succeed) and reads its plan.
fn compiled(dir: &std::path::Path, name: &str, text: &str) -> mgc_plan::Plan {
    std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
    let (code, _, err) = mgc(&["compile", &format!("{name}.toml")], dir);
    assert_eq!(code, 0, "{err}");
    mgc_plan::Plan::from_json(&std::fs::read_to_string(dir.join(format!("{name}.plan.json"))).unwrap()).unwrap()
}

#[test]
fn plans_that_cannot_work_are_refused_with_the_shortfall() {
    let dir = with_flux();
    let cases = [
        ("no-rest", workflow("24gb", "0gb", "cuda:0,8gb;cuda:1,4gb"), "short"),
        ("over-device", workflow("24gb", "2gb", "cuda:0,23gb;cpu,*"), "has 22.00 GiB to give"),
        ("over-memory", workflow("16gb", "0gb", "cuda:0,15.5gb;cpu,*"), "at its peak"),
        ("fraction-of-disk", workflow("24gb", "0gb", "cuda:0,0.5;disk,0.5"), "fraction of `disk`"),
        (
            "frames-on-image",
            workflow("24gb", "2gb", "cuda:0,14gb;cpu,*") + "\n[workload]\nresolution = [1024, 1024]\nframes = 5\n",
            "`frames` on an image model",
        ),
    ];
    let mut transcript = String::new();
    for (name, text, expect) in cases {
        let file = format!("{name}.toml");
        std::fs::write(dir.path().join(&file), text).unwrap();
        let (code, out, err) = mgc(&["compile", &file], dir.path());
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(err.contains(expect), "{name}: expected `{expect}` in {err}");
        assert!(!dir.path().join(format!("{name}.plan.json")).exists(), "{name}: a refused plan must not be written");
        let (json_code, json, _) = mgc(&["compile", &file, "--format", "json"], dir.path());
        assert_eq!(json_code, 1);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(parsed["errors"][0]["message"].as_str().unwrap().len() > 10);
        transcript.push_str(&format!("$ mgc compile {file}\n{err}\n"));
    }
    insta::assert_snapshot!(transcript);
}

#[test]
fn a_broken_model_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.safetensors"), b"\x05\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    std::fs::write(dir.path().join("w.toml"), "[[device]]\nname = \"cpu\"\nmemory = \"8gb\"\n[[model]]\nname = \"m\"\nfile = \"broken.safetensors\"\ncompute = \"cpu\"\n").unwrap();
    let (code, _, err) = mgc(&["compile", "w.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("broken.safetensors") && err.contains("EOF while parsing"), "{err}");
}

#[test]
fn a_plan_that_cannot_be_written_leaves_nothing_behind() {
    let dir = with_flux();
    std::fs::write(dir.path().join("ok.toml"), workflow("24gb", "1gb", "cuda:0,12gb;cpu,*")).unwrap();
    let (code, _, err) = mgc(&["compile", "ok.toml", "-o", "no/such/folder/plan.json"], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot write the plan"));
    // A plan in place is replaced whole: never a half-written file, no temporary left over.
    std::fs::write(dir.path().join("plan.json"), "old").unwrap();
    assert_eq!(mgc(&["compile", "ok.toml", "-o", "plan.json"], dir.path()).0, 0);
    let written = std::fs::read_to_string(dir.path().join("plan.json")).unwrap();
    assert!(mgc_plan::Plan::from_json(&written).is_ok());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn explain_refuses_plans_it_cannot_trust() {
    let dir = with_flux();
    std::fs::write(dir.path().join("ok.toml"), workflow("24gb", "1gb", "cuda:0,12gb;cpu,*")).unwrap();
    assert_eq!(mgc(&["compile", "ok.toml"], dir.path()).0, 0);
    let plan = std::fs::read_to_string(dir.path().join("ok.plan.json")).unwrap();
    let cases = [
        (
            "version.json",
            plan.replacen("\"format_version\":1", "\"format_version\":99", 1),
            "version 99 is not supported",
        ),
        ("truncated.json", plan[..plan.len() / 2].to_owned(), "not a plan"),
        ("unknown-field.json", plan.replacen("\"generator\"", "\"generatr\"", 1), "damaged"),
        ("bad-index.json", plan.replacen("\"input\":0", "\"input\":7", 1), "refers to input 7"),
    ];
    for (file, text, expect) in cases {
        std::fs::write(dir.path().join(file), text).unwrap();
        let (code, _, err) = mgc(&["explain", file], dir.path());
        assert_eq!(code, 1, "{file}");
        assert!(err.contains(expect), "{file}: {err}");
    }
}

#[test]
fn schema_describes_the_plan() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, out, _) = mgc(&["schema"], here);
    assert_eq!(code, 0);
    let schema: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(schema["title"], "Plan");
    for field in ["format_version", "devices", "models", "transfers", "predicted", "inputs"] {
        assert!(schema["properties"][field].is_object(), "no `{field}` in the schema");
    }
    assert!(schema["required"].as_array().unwrap().iter().any(|f| f == "format_version"));
}

#[test]
fn a_hardware_profile_replaces_the_defaults_and_workflow_figures_replace_the_profile() {
    let dir = with_flux();
    std::fs::write(
        dir.path().join("hw.toml"),
        "[[device]]\nname = \"cuda:0\"\nflops_per_second = 1.6e14\n\n[[device]]\nname = \"cuda:1\"\nflops_per_second = 5e13\n\n[[link]]\nfrom = \"cpu\"\nto = \"cuda:0\"\nbytes_per_second = 2.2e10\n\n[disk]\nread_bytes_per_second = 3.5e9\n",
    )
    .unwrap();
    let text = format!("profile = \"hw.toml\"\n{}", workflow("24gb", "1gb", "cuda:0,12gb;cuda:1,4gb;cpu,*"))
        .replace("name = \"cuda:1\"\nmemory = \"12gb\"", "name = \"cuda:1\"\nmemory = \"12gb\"\ntflops = 20");
    let plan = compiled(dir.path(), "p", &text);
    let flops = |device: Device| plan.devices.iter().find(|d| d.name == device).unwrap().flops_per_second;
    assert_eq!(flops(Device::Cuda(0)), 1.6e14, "from the profile");
    assert_eq!(flops(Device::Cuda(1)), 2e13, "the workflow's `tflops` wins over the profile");
    let link = plan.links.iter().find(|l| l.from == Device::Cpu && l.to == Device::Cuda(0)).unwrap();
    assert_eq!((link.bandwidth_bytes_per_second, link.source.as_str()), (22_000_000_000, "profile"));

    std::fs::write(dir.path().join("bad.toml"), "[[device]]\nname = \"gpu:0\"\nflops_per_second = 1e14\n").unwrap();
    std::fs::write(
        dir.path().join("q.toml"),
        format!("profile = \"bad.toml\"\n{}", workflow("24gb", "1gb", "cuda:0,12gb;cpu,*")),
    )
    .unwrap();
    let (code, _, err) = mgc(&["compile", "q.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read the hardware profile `bad.toml`") && err.contains("`gpu:0` is not a device"),
        "{err}"
    );
}

#[test]
fn the_disk_tier_is_read_cold_when_the_models_exceed_ram() {
    let dir = with_flux();
    let disk_link = |profile: &str, ram: &str, compute: &str| {
        std::fs::write(dir.path().join("hw.toml"), profile).unwrap();
        let allocation = format!("{compute},12gb;disk,*");
        let text = format!("profile = \"hw.toml\"\n{}", workflow("24gb", "1gb", &allocation))
            .replace("memory = \"64gb\"", &format!("memory = \"{ram}\""))
            .replace("compute = \"cuda:0\"", &format!("compute = \"{compute}\""));
        let plan = compiled(dir.path(), "d", &text);
        let link = plan.links.iter().find(|l| l.from == Device::Disk).unwrap().clone();
        (link.bandwidth_bytes_per_second, link.source)
    };
    let profile = "[disk]\nread_bytes_per_second = 3.5e9\ncold_read_bytes_per_second = 1.2e9\n";
    // Flux (23.8 GB) fits in 64 GB of RAM: the file stays in the page cache between steps.
    let (warm, source) = disk_link(profile, "64gb", "cuda:0");
    assert_eq!(warm, 3_500_000_000, "{source}");
    // Not in 16 GB: every step reads it from the drive.
    let (cold, source) = disk_link(profile, "16gb", "cuda:0");
    assert_eq!(cold, 1_200_000_000, "{source}");
    assert!(source.contains("cold"), "{source}");

    // A GPU's transfers are gathered into its staging buffer on several threads, at the rate the
    // probe measured that way, where a CPU reads on one thread; cold, the drive is the limit.
    let staged = format!("{profile}staged_read_bytes_per_second = 9e9\n");
    let (gpu, source) = disk_link(&staged, "64gb", "cuda:0");
    assert_eq!(gpu, 9_000_000_000, "{source}");
    assert!(source.contains("staging"), "{source}");
    let (cpu, source) = disk_link(&staged, "64gb", "cpu");
    assert_eq!(cpu, 3_500_000_000, "{source}");
    let (cold, source) = disk_link(&staged, "16gb", "cuda:0");
    assert_eq!(cold, 1_200_000_000, "{source}");
}

#[test]
fn kernels_beside_copies_are_slowed_for_the_part_of_the_step_the_copies_take() {
    let dir = with_flux();
    // Layer compute seconds of Flux on cuda:0 under `allocation`, with a profile whose copies to
    // cuda:0 run at `link` bytes a second and whose kernels run `slowdown` × slower beside them.
    let layers = |allocation: &str, link: &str, slowdown: Option<f64>| {
        let slowdown = slowdown.map_or(String::new(), |s| format!("copy_slowdown = {s}\n"));
        std::fs::write(
            dir.path().join("hw.toml"),
            format!(
                "[[device]]\nname = \"cuda:0\"\nflops_per_second = 1e15\n{slowdown}\n[[link]]\nfrom = \"cpu\"\nto = \"cuda:0\"\nbytes_per_second = {link}\n"
            ),
        )
        .unwrap();
        let text = format!("profile = \"hw.toml\"\n{}", workflow("48gb", "1gb", allocation));
        let plan = compiled(dir.path(), "s", &text);
        plan.models[0].layers.iter().map(|l| l.compute_seconds).collect::<Vec<f64>>()
    };
    let factors = |with: &[f64], without: &[f64]| -> Vec<f64> {
        with.iter().zip(without).filter(|(_, b)| **b > 0.0).map(|(a, b)| a / b).collect()
    };
    let streamed = "cuda:0,20gb;cpu,*";
    // Copies slower than the compute run beside all of it: every layer 1.5 × slower (the plan
    // keeps its seconds to the nanosecond).
    let slow_link = factors(&layers(streamed, "1e9", Some(1.5)), &layers(streamed, "1e9", None));
    assert!(!slow_link.is_empty() && slow_link.iter().all(|f| (f - 1.5).abs() < 1e-4), "{slow_link:?}");
    // Fast copies run beside a small part of it: slower, by less.
    let fast_link = factors(&layers(streamed, "1e12", Some(1.5)), &layers(streamed, "1e12", None));
    assert!(fast_link.iter().all(|f| *f > 1.0 && *f < 1.1), "{fast_link:?}");
    // A model that does not stream is not slowed.
    let resident = factors(&layers("cuda:0,*", "1e9", Some(1.5)), &layers("cuda:0,*", "1e9", None));
    assert!(resident.iter().all(|f| (f - 1.0).abs() < 1e-9), "{resident:?}");
}

/// The CPU's peak holds the host memory of the CUDA side when a model computes on a GPU: the
/// profile's figure where it has one, else the default; a workflow on the CPU alone holds none.
#[test]
fn the_cpu_holds_the_cuda_sides_host_memory_only_when_a_gpu_computes() {
    let dir = with_flux();
    let cpu_runtime = |profile: &str, compute: &str| -> (u64, String) {
        std::fs::write(dir.path().join("hw.toml"), profile).unwrap();
        let allocation = if compute == "cpu" { "cpu,*" } else { "cuda:0,20gb;cpu,*" };
        let text = format!("profile = \"hw.toml\"\n{}", workflow("48gb", "1gb", allocation))
            .replace("compute = \"cuda:0\"", &format!("compute = \"{compute}\""));
        let plan = compiled(dir.path(), "h", &text);
        let cpu = plan.devices.iter().find(|d| d.name == mgc_plan::Device::Cpu).unwrap();
        (cpu.runtime_bytes, cpu.runtime_source.clone())
    };
    let measured =
        "[[device]]\nname = \"cpu\"\nflops_per_second = 1e12\nruntime_bytes = 20971520\ngpu_host_bytes = 209715200\n";
    let cpu_only = "[[device]]\nname = \"cpu\"\nflops_per_second = 1e12\nruntime_bytes = 20971520\n";
    assert_eq!(cpu_runtime(measured, "cuda:0"), ((20 << 20) + (200 << 20), "profile".to_owned()));
    assert_eq!(cpu_runtime(cpu_only, "cuda:0"), ((20 << 20) + (256 << 20), "profile and default".to_owned()));
    assert_eq!(cpu_runtime(measured, "cpu"), (20 << 20, "profile".to_owned()));
}

/// A compile killed at any moment leaves either no plan or a whole one — never half of one.
#[test]
fn an_interrupted_compile_never_leaves_a_partial_plan() {
    use mgc_compiler::inventory::synth::{InventoryFixture, write_header_only};
    let dir = tempfile::tempdir().unwrap();
    let tensors = (0..20_000)
        .map(|i| (format!("blocks.{}.t{}.weight", i / 20, i % 20), vec![64, 64], "BF16".to_owned()))
        .collect();
    let fixture = InventoryFixture { model: "big".into(), prefix: None, metadata: None, tensors, data_bytes: None };
    write_header_only(&fixture, "", &dir.path().join("big.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("big.toml"),
        "[[device]]\nname = \"cpu\"\nmemory = \"64gb\"\n[[model]]\nname = \"big\"\nfile = \"big.safetensors\"\ncompute = \"cpu\"\nallocation = \"cpu,50%;disk,*\"\n",
    )
    .unwrap();
    let plan = dir.path().join("big.plan.json");
    // How long a whole compile takes here; the kills are spread over it.
    let started = std::time::Instant::now();
    assert!(
        Command::new(env!("CARGO_BIN_EXE_mgc"))
            .args(["compile", "big.toml"])
            .current_dir(dir.path())
            .output()
            .unwrap()
            .status
            .success()
    );
    let whole = started.elapsed().as_millis() as u64;
    let mut outcomes = (0, 0);
    for delay_ms in (0..=whole + whole / 5).step_by((whole as usize / 15).max(1)) {
        let _ = std::fs::remove_file(&plan);
        let mut child = Command::new(env!("CARGO_BIN_EXE_mgc"))
            .args(["compile", "big.toml", "--format", "json"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        match std::fs::read_to_string(&plan) {
            Ok(text) => {
                assert!(mgc_plan::Plan::from_json(&text).is_ok(), "killed after {delay_ms} ms: a partial plan");
                outcomes.1 += 1;
            }
            Err(_) => outcomes.0 += 1,
        }
    }
    // Every outcome was whole or absent; note how many of each happened.
    eprintln!("interrupted compiles: {} left no plan, {} a whole plan", outcomes.0, outcomes.1);
}
