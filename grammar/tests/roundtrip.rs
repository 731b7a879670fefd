//! Property: every allocation, printed in its canonical form, parses back to the same meaning —
//! and the bytes it names are exact.
#![expect(clippy::indexing_slicing, reason = "tests")]

use mgc_grammar::{Amount, parse_allocation};
use proptest::prelude::*;

fn device() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("cpu".to_owned()),
        Just("mps".to_owned()),
        Just("disk".to_owned()),
        (0u32..8).prop_map(|n| format!("cuda:{n}")),
        (0u32..4).prop_map(|n| format!("xpu:{n}")),
        (0u32..4).prop_map(|n| format!("hip:{n}")),
        (0u32..4).prop_map(|n| format!("npu:{n}")),
        (0u32..4).prop_map(|n| format!("directml:{n}")),
    ]
}

fn unit() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["b", "k", "kb", "KiB", "m", "MB", "mib", "g", "GB", "gib", "t", "tb", "TiB"])
}

/// Allocations as users write them: distinct devices, one kind of amount, maybe one `*`.
fn allocation() -> impl Strategy<Value = String> {
    let devices = prop::collection::btree_set(device(), 1..5).prop_map(|s| s.into_iter().collect::<Vec<_>>());
    (devices, 0u8..3, any::<bool>(), prop::collection::vec((1u32..5000, 0u32..1000, unit()), 5)).prop_map(
        |(devices, mode, rest, amounts)| {
            let n = devices.len();
            let entries: Vec<String> = devices
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let (whole, frac, unit) = amounts[i % amounts.len()];
                    if rest && i == n - 1 {
                        return format!("{d},*");
                    }
                    match mode {
                        0 => format!("{d},{whole}.{frac:03}{unit}"),
                        1 => format!(
                            "{d},{}%",
                            if rest {
                                1 + whole % 20
                            } else if i == n - 1 {
                                100 - 10 * (n as u32 - 1)
                            } else {
                                10
                            }
                        ),
                        _ => format!("{d},0.{:03}", 1 + frac % 999),
                    }
                })
                .collect();
            entries.join(" ; ")
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn canonical_text_parses_to_the_same_allocation(text in allocation()) {
        let parsed = parse_allocation(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e:?}")))?;
        let printed = parsed.to_string();
        let again = parse_allocation(&printed).map_err(|e| TestCaseError::fail(format!("{printed}: {e:?}")))?;
        prop_assert!(parsed.same_meaning(&again), "{text} -> {printed}");
        prop_assert_eq!(again.to_string(), printed);
        for entry in &parsed.entries {
            if let Amount::Bytes(bytes) = entry.amount.value {
                prop_assert!(bytes.get() > 0);
            }
        }
    }
}
