//! DisTorch's strings give DisTorch's budgets: every example of its README, its full strings and
//! its virtual VRAM, on a Flux of known size. The expected figures follow DisTorch's own code
//! paths (`distorch_2.py`): `parse_memory_string` and `calculate_fraction_from_byte_expert_string`
//! for bytes, `calculate_fraction_from_ratio_expert_string` for ratios,
//! `calculate_safetensor_vvram_allocation` for virtual VRAM, and fractions of each device's memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

mod common;

use common::{mgc, with_flux};
use std::path::Path;

/// The bytes of the synthetic Flux's tensors: DisTorch's `total_model_memory`.
const FLUX: u64 = 23_802_816_640;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Two 24 GiB GPUs and 64 GiB of RAM, no reserve: DisTorch's `get_total_memory` figures.
fn workflow(compute: &str, model_keys: &str) -> String {
    let mut text = String::new();
    for (name, memory) in [("cuda:0", "24gb"), ("cuda:1", "24gb"), ("cpu", "64gb")] {
        text.push_str(&format!("[[device]]\nname = \"{name}\"\nmemory = \"{memory}\"\nreserve = \"0gb\"\n\n"));
    }
    text.push_str(&format!(
        "[[model]]\nname = \"flux\"\nfile = \"flux.safetensors\"\ncompute = \"{compute}\"\n{model_keys}\n"
    ));
    text
}

/// `mgc explain --stage budgets`: each device's budget, in order.
fn budgets(dir: &Path, name: &str, text: &str) -> Vec<(String, u64)> {
    let file = format!("{name}.toml");
    std::fs::write(dir.join(&file), text).unwrap();
    let (code, out, err) = mgc(&["explain", &file, "--stage", "budgets"], dir);
    assert_eq!(code, 0, "{name}: {err}");
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    parsed["models"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["device"].as_str().unwrap().to_owned(), e["bytes"].as_u64().unwrap()))
        .collect()
}

fn allocation(text: &str) -> String {
    format!("allocation = \"{text}\"")
}

/// DisTorch's ratio: `(ratio / sum) * total_model_memory`, in floating point; ours is the exact
/// floor, so the two agree to within a byte.
fn ratio(part: f64, sum: f64) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "DisTorch computes in floating point")]
    let total = FLUX as f64;
    part / sum * total
}

fn close(ours: &[(String, u64)], theirs: &[(&str, f64)], case: &str) {
    assert_eq!(ours.len(), theirs.len(), "{case}: {ours:?}");
    for ((device, bytes), (their_device, their_bytes)) in ours.iter().zip(theirs) {
        assert_eq!(device, their_device, "{case}");
        #[expect(clippy::cast_precision_loss, reason = "compared to DisTorch's floating point")]
        let diff = (*bytes as f64 - their_bytes).abs();
        assert!(diff < 1.0, "{case}: {device} {bytes} vs DisTorch's {their_bytes}");
    }
}

#[test]
fn readme_byte_examples_give_distorchs_exact_bytes() {
    let dir = with_flux();
    // `cuda:0,2.5gb;cpu,*`: 2.5 * 1024**3 on cuda:0, the remaining bytes on the wildcard.
    let b = budgets(dir.path(), "bytes", &workflow("cuda:0", &allocation("cuda:0,2.5gb;cpu,*")));
    assert_eq!(b, [("cuda:0".into(), 5 * GIB / 2), ("cpu".into(), FLUX - 5 * GIB / 2)]);
    // `cuda:0,500mb;cuda:1,3.0g;cpu,5gb*`: `*` anywhere in the amount makes `cpu` the wildcard.
    let b = budgets(dir.path(), "star", &workflow("cuda:0", &allocation("cuda:0,500mb;cuda:1,3.0g;cpu,5gb*")));
    assert_eq!(
        b,
        [("cuda:0".into(), 500 * MIB), ("cuda:1".into(), 3 * GIB), ("cpu".into(), FLUX - 500 * MIB - 3 * GIB)]
    );
    // The same with DisTorch's full string (`<expert>#<compute>`) and a trailing `;`.
    for (name, text) in [
        ("full", "cuda:0,500mb;cuda:1,3.0g;cpu,5gb*#cuda:0"),
        ("full-vram", "cuda:0,500mb;cuda:1,3.0g;cpu,5gb*#cuda:0;4.0;cpu"),
        ("trailing", "cuda:0,500mb;cuda:1,3.0g;cpu,5gb*;"),
    ] {
        assert_eq!(budgets(dir.path(), name, &workflow("cuda:0", &allocation(text))), b, "{text}");
    }
}

#[test]
fn readme_ratio_examples_are_normalised_as_distorch_does() {
    let dir = with_flux();
    let b = budgets(dir.path(), "quarter", &workflow("cuda:0", &allocation("cuda:0,25%;cpu,75%")));
    close(&b, &[("cuda:0", ratio(25.0, 100.0)), ("cpu", ratio(75.0, 100.0))], "25:75");
    let b = budgets(dir.path(), "ratio", &workflow("cuda:0", &allocation("cuda:0,8%;cuda:1,8%;cpu,4%")));
    close(&b, &[("cuda:0", ratio(8.0, 20.0)), ("cuda:1", ratio(8.0, 20.0)), ("cpu", ratio(4.0, 20.0))], "8:8:4");
    assert_eq!(b.iter().map(|(_, bytes)| bytes).sum::<u64>(), FLUX);
    let b = budgets(dir.path(), "ratio-full", &workflow("cuda:1", &allocation("cuda:0,8%;cuda:1,8%;cpu,4%#cuda:1")));
    close(&b, &[("cuda:0", ratio(8.0, 20.0)), ("cuda:1", ratio(8.0, 20.0)), ("cpu", ratio(4.0, 20.0))], "#cuda:1");
}

#[test]
fn readme_fraction_example_is_a_fraction_of_each_devices_memory() {
    let dir = with_flux();
    // `cuda:0,0.1;cpu,0.5`: `total_mem_bytes * fraction` of each device.
    let b = budgets(dir.path(), "fraction", &workflow("cuda:0", &allocation("cuda:0,0.1;cpu,0.5")));
    #[expect(clippy::cast_precision_loss, reason = "DisTorch computes in floating point")]
    let (gpu, ram) = ((24 * GIB) as f64, (64 * GIB) as f64);
    close(&b, &[("cuda:0", gpu * 0.1), ("cpu", ram * 0.5)], "fractions");
}

#[test]
fn virtual_vram_moves_exactly_that_many_gigabytes_to_the_donors_in_order() {
    let dir = with_flux();
    // The Normal mode's default: `virtual_vram_gb` 4.0, donor `cpu`, as the string its nodes build
    // and as workflow keys.
    let expected = [("cuda:0".to_owned(), FLUX - 4 * GIB), ("cpu".to_owned(), 4 * GIB)];
    for (name, keys) in [
        ("vvram", allocation("#cuda:0;4.0;cpu")),
        ("keys", "virtual_vram = \"4gb\"\ndonor = \"cpu\"".to_owned()),
        ("default-donor", "virtual_vram = \"4gb\"".to_owned()),
    ] {
        assert_eq!(budgets(dir.path(), name, &workflow("cuda:0", &keys)), expected, "{keys}");
    }
    // Donors are filled in order, each up to its memory: cuda:0 takes all 8 GB, cpu nothing.
    let expected = [("cuda:1".to_owned(), FLUX - 8 * GIB), ("cuda:0".to_owned(), 8 * GIB)];
    for (name, keys) in [
        ("two-donors", allocation("#cuda:1;8.0;cuda:0,cpu")),
        ("two-donor-keys", "virtual_vram = \"8gb\"\ndonor = [\"cuda:0\", \"cpu\"]".to_owned()),
    ] {
        assert_eq!(budgets(dir.path(), name, &workflow("cuda:1", &keys)), expected, "{keys}");
    }
    // More than the first donor holds: it is filled, the next takes the rest.
    let b = budgets(dir.path(), "spill", &workflow("cuda:1", &allocation("#cuda:1;30.0;cuda:0,cpu")));
    assert_eq!(b, [("cuda:1".into(), 0), ("cuda:0".into(), 24 * GIB), ("cpu".into(), 6 * GIB)]);
}

#[test]
fn explain_shows_the_budgets_of_virtual_vram() {
    let dir = with_flux();
    let mut transcript = String::new();
    for (name, keys) in
        [("keys", "virtual_vram = \"4gb\"\ndonor = [\"cpu\"]".to_owned()), ("string", allocation("#cuda:0;4.0;cpu"))]
    {
        let file = format!("{name}.toml");
        std::fs::write(dir.path().join(&file), workflow("cuda:0", &keys)).unwrap();
        let (code, out, err) = mgc(&["explain", &file, "--stage", "budgets"], dir.path());
        assert_eq!(code, 0, "{err}");
        transcript.push_str(&format!("# {keys}\n$ mgc explain {file} --stage budgets\n{out}\n"));
    }
    insta::assert_snapshot!(transcript);
}

#[test]
fn full_strings_and_virtual_vram_keys_that_disagree_are_refused() {
    let dir = with_flux();
    let mut transcript = String::new();
    for (name, compute, keys) in [
        ("other-compute", "cuda:0", allocation("cuda:0,2.5gb;cpu,*#cuda:1")),
        ("other-compute-vvram", "cuda:0", allocation("#cuda:1;4.0;cpu")),
        ("both", "cuda:0", format!("{}\nvirtual_vram = \"4gb\"", allocation("cuda:0,2.5gb;cpu,*"))),
        ("donor-alone", "cuda:0", "donor = \"cpu\"".to_owned()),
        ("donor-is-compute", "cuda:0", "virtual_vram = \"4gb\"\ndonor = [\"cuda:0\", \"cpu\"]".to_owned()),
        ("donor-number", "cuda:0", "virtual_vram = \"4gb\"\ndonor = 1".to_owned()),
        ("no-unit", "cuda:0", "virtual_vram = \"4\"".to_owned()),
    ] {
        let file = format!("{name}.toml");
        std::fs::write(dir.path().join(&file), workflow(compute, &keys)).unwrap();
        let (code, _, err) = mgc(&["check", &file], dir.path());
        assert_eq!(code, 1, "{name}: {err}");
        transcript.push_str(&format!("$ mgc check {file}\n{err}\n"));
    }
    insta::assert_snapshot!(transcript);
}
