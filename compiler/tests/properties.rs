//! Properties of compiled plans over random models, machines and allocations: every layer placed
//! exactly once, budgets respected, no device above its memory, the same input giving the same
//! plan — or a clear refusal, never a panic.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

use std::collections::BTreeMap;

use mgc_compiler::compile::{CompileError, ProblemKind, toml_to_plan};
use mgc_compiler::inventory::synth::{InventoryFixture, write_header_only};
use mgc_core::Hardware;
use mgc_plan::Device;
use proptest::prelude::*;

/// A model of `layers` blocks (each two tensors: a matrix and a bias) plus an input and output.
fn fixture(layers: &[u64]) -> InventoryFixture {
    let mut tensors = vec![("img_in.weight".to_owned(), vec![64, 64], "BF16".to_owned())];
    for (i, &kib) in layers.iter().enumerate() {
        tensors.push((format!("blocks.{i}.ffn.weight"), vec![kib, 512], "BF16".to_owned()));
        tensors.push((format!("blocks.{i}.ffn.bias"), vec![kib], "BF16".to_owned()));
    }
    tensors.push(("head.weight".to_owned(), vec![16, 64], "F32".to_owned()));
    InventoryFixture { model: "random".into(), prefix: None, metadata: None, tensors, data_bytes: None }
}

fn allocation() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u32..64, 0u32..64).prop_map(|(a, b)| format!("cuda:0,{a}mb;cuda:1,{b}mb;cpu,*").replace(";cuda:1,0mb", "")),
        (1u32..100).prop_map(|p| format!("cuda:0,{p}%;cpu,*")),
        (1u32..99).prop_map(|p| format!("cuda:0,{p}%;cpu,{}%", 100 - p)),
        (1u32..=100).prop_map(|f| format!("cuda:0,{};cpu,*", f as f64 / 100.0)),
        (1u32..=100).prop_map(|f| format!("{}", f as f64 / 100.0)),
        (1u32..64).prop_map(|a| format!("cuda:0,{a}mb;disk,*")),
        (1u32..64, 1u32..64).prop_map(|(a, b)| format!("cuda:0,{a}mb;cuda:1,{b}mb")),
        Just("cuda:0,*".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn plans_place_every_layer_once_within_budgets_and_memory(
        layers in prop::collection::vec(16u64..4096, 1..40),
        gpu_mb in 8u64..256,
        reserve_mb in 0u64..8,
        allocation in allocation(),
        placement in prop_oneof![Just("auto"), Just("tail"), Just("head")],
        prefetch in prop_oneof![Just("\"auto\"".to_owned()), (0u32..4).prop_map(|p| p.to_string())],
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_header_only(&fixture(&layers), "", &dir.path().join("m.safetensors")).unwrap();
        let workflow = format!(
            "[[device]]\nname = \"cuda:0\"\nmemory = \"{gpu_mb}mb\"\nreserve = \"{reserve_mb}mb\"\n\
             [[device]]\nname = \"cuda:1\"\nmemory = \"64mb\"\n\
             [[device]]\nname = \"cpu\"\nmemory = \"1gb\"\n\
             [[model]]\nname = \"m\"\nfile = \"m.safetensors\"\ncompute = \"cuda:0\"\nallocation = \"{allocation}\"\nplacement = \"{placement}\"\n\
             [workload]\ntokens = 64\n[schedule]\nprefetch = {prefetch}\nbatch_below = \"256kb\"\n"
        );
        let compiled = toml_to_plan(&workflow, dir.path(), &Hardware::default);
        let plan = match compiled {
            Ok(plan) => plan,
            Err(errors) => {
                // A refusal is fine, when it is one of the refusals a plan can get.
                for error in errors {
                    let CompileError::Problem(problem) = error else { panic!("unexpected {error:?}") };
                    prop_assert!(matches!(
                        problem.kind,
                        ProblemKind::DoesNotFit { .. } | ProblemKind::DoesNotPack { .. }
                            | ProblemKind::BudgetOverDevice { .. } | ProblemKind::DeviceOverMemory { .. }
                    ), "{problem:?}");
                }
                return Ok(());
            }
        };
        let model = &plan.models[0];
        // Every tensor in exactly one layer.
        let mut names: Vec<&str> = model.layers.iter().flat_map(|l| l.tensors.iter().map(|t| t.name.as_str())).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        prop_assert_eq!(names.len(), count);
        prop_assert_eq!(count, 2 * layers.len() + 2);
        // Every layer has one home, a device of the plan.
        let devices: Vec<Device> = plan.devices.iter().map(|d| d.name).collect();
        for layer in &model.layers {
            prop_assert!(devices.contains(&layer.home), "{} on {}", layer.name, layer.home);
        }
        // Budgets: no device gets more than its budget, except the one that takes the rest.
        let used: BTreeMap<Device, u64> = model.layers.iter().fold(BTreeMap::new(), |mut m, l| {
            *m.entry(l.home).or_default() += l.bytes;
            m
        });
        let rest = allocation.contains('*') || allocation.contains('%') || !allocation.contains("mb");
        let last = model.budgets.last().map(|b| b.device);
        for budget in &model.budgets {
            let takes_rest = rest && (allocation.contains(&format!("{},*", budget.device)) || Some(budget.device) == last && !allocation.contains('*'));
            if !takes_rest {
                prop_assert!(used.get(&budget.device).copied().unwrap_or(0) <= budget.bytes, "{} over its budget", budget.device);
            }
        }
        prop_assert_eq!(used.values().sum::<u64>(), model.bytes);
        // No device above its memory.
        for device in plan.devices.iter().filter(|d| d.name != Device::Disk) {
            prop_assert!(device.peak_bytes <= device.memory_bytes - device.reserve_bytes, "{} at {} of {}", device.name, device.peak_bytes, device.memory_bytes);
            prop_assert!(device.peak_bytes >= device.resident_bytes);
        }
        // The step is never faster than its lower bound.
        prop_assert!(plan.predicted.step_seconds + 1e-9 >= plan.predicted.lower_bound_seconds);
        // The same input gives the same plan, byte for byte.
        let again = toml_to_plan(&workflow, dir.path(), &Hardware::default).unwrap();
        prop_assert_eq!(plan.to_json(), again.to_json());
    }
}
