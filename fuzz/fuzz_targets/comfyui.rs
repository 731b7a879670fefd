//! Saved ComfyUI workflows, parsed, mapped and written as mgc workflows: never a panic, and what
//! is written always reads back as a workflow file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mgc_compiler::import::{Located, comfy_to_imported, imported_to_toml, json_to_comfy};

fuzz_target!(|text: &str| {
    let Ok(comfy) = json_to_comfy(text) else { return };
    let imported = comfy_to_imported(&comfy);
    let toml = imported_to_toml(&imported, "fuzz.json", &|m| Located { path: m.file.clone(), found: false });
    if let Err(error) = mgc_compiler::spec::toml_to_spec(&toml) {
        panic!("the import wrote a file that does not parse: {error}\n{toml}");
    }
});
