//! Plans: a damaged or hostile plan is refused, never a panic; what loads writes back and loads
//! again to the same plan.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(plan) = mgc_plan::Plan::from_json(text) {
        let again = mgc_plan::Plan::from_json(&plan.to_json()).expect("a loaded plan reloads");
        assert_eq!(plan, again);
    }
});
