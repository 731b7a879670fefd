//! Workflow files, parsed and resolved (and compiled when they resolve): never a panic, every
//! error's span inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mgc_core::Hardware;

fuzz_target!(|text: &str| {
    let dir = std::env::temp_dir();
    match mgc_compiler::workflow::toml_to_workflow(text, &dir, &Hardware::default) {
        Ok(workflow) => {
            let _ = mgc_compiler::compile::workflow_to_plan(&workflow);
        }
        Err(errors) => {
            for error in errors {
                assert!(error.span.end <= text.len(), "span past the end: {error:?}");
            }
        }
    }
});
