//! Allocation strings: never a panic; every span inside the string; what parses prints back to
//! text that parses to the same meaning.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match mgc_grammar::parse_allocation(text) {
        Ok(allocation) => {
            let again = mgc_grammar::parse_allocation(&allocation.to_string()).expect("canonical text parses");
            assert!(allocation.same_meaning(&again));
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for error in errors {
                assert!(error.span.start <= error.span.end && error.span.end <= text.len());
            }
        }
    }
    let _ = mgc_grammar::parse_size(text);
    let _ = mgc_grammar::parse_bandwidth(text);
    let _ = mgc_grammar::parse_device(text);
});
