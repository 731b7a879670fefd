//! mgc's compiler front end.
//!
//! | stage | from | to | function |
//! |---|---|---|---|
//! | parse | workflow TOML text | [`spec::RawWorkflow`] | [`spec::toml_to_spec`] |
//! | resolve | [`spec::RawWorkflow`] | [`workflow::Workflow`] | [`workflow::spec_to_workflow`] |
//! | import | ComfyUI workflow JSON | [`import::Imported`] | [`import::json_to_comfy`], [`import::comfy_to_imported`] |
//! | inventory | model file header | [`inventory::Inventory`] | [`inventory::file_to_inventory`] |
//!
//! Every stage returns all the errors it finds, each a kind and a span; rendering is the CLI's.

pub mod compile;
pub mod import;
pub mod inventory;
pub mod spec;
pub mod workflow;
