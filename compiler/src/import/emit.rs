//! An import written as an mgc workflow file.

use crate::import::{Imported, Model};

/// Where a model file was looked for: the path the workflow names, and whether it is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub path: String,
    pub found: bool,
}

/// A TOML string, quoted and escaped.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// A comment line: a value from the workflow must not end the comment early.
fn comment(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// The workflow file of an import. `source` names the ComfyUI workflow in the header; `locate`
/// says where each model's file is (its folders tried in order).
pub fn imported_to_toml(imported: &Imported, source: &str, locate: &dyn Fn(&Model) -> Located) -> String {
    let located: Vec<Located> = imported.models.iter().map(locate).collect();
    let mut text = format!(
        "# Imported by `mgc import` from `{}` ({}, ComfyUI-MultiGPU loaders).\n",
        comment(source),
        imported.format.name()
    );
    if !imported.skipped.is_empty() {
        text.push_str("#\n# Not imported: mgc cannot map these nodes.\n");
        for s in &imported.skipped {
            text.push_str(&format!(
                "#   node {} `{}`: {}\n",
                comment(&s.node_id),
                comment(&s.node_class),
                comment(&s.reason)
            ));
        }
    }
    let missing: Vec<&Located> = located.iter().filter(|l| !l.found).collect();
    if !missing.is_empty() {
        text.push_str("#\n# Model files not found; these are the paths ComfyUI would load them from:\n");
        for l in missing {
            text.push_str(&format!("#   {}\n", comment(&l.path)));
        }
    }
    text.push_str(&devices(imported));
    for (model, located) in imported.models.iter().zip(&located) {
        text.push_str(&format!("\n[[model]]\n# node {} `{}`", comment(&model.node_id), comment(&model.node_class)));
        if !located.found {
            text.push_str(", file not found");
        }
        text.push('\n');
        if let Some(note) = model.note {
            text.push_str(&format!("# {note}\n"));
        }
        text.push_str(&format!("name = {}\n", quoted(&model.name)));
        text.push_str(&format!("file = {}\n", quoted(&located.path)));
        text.push_str(&format!("compute = {}\n", quoted(&model.compute)));
        text.push_str(&format!("allocation = {}\n", quoted(&model.allocation.text(&model.compute))));
    }
    text
}

/// The devices the models name, in order of first use. They are left to detection: the machine
/// that runs `mgc` reports its GPUs and memory. Declared devices need their memory, so they are
/// written as commented placeholders.
fn devices(imported: &Imported) -> String {
    let mut names: Vec<String> = Vec::new();
    for model in &imported.models {
        let donors = match &model.allocation {
            crate::import::Allocation::Virtual { donors, .. } => donors.split(',').map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        for name in std::iter::once(model.compute.clone()).chain(donors) {
            // The CPU's memory is always detected, declared GPUs or not.
            if name != "cpu" && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        return "\n# Devices: detected on the machine that runs `mgc`.\n".into();
    }
    let mut text = String::from(
        "\n# Devices: detected on the machine that runs `mgc`. To plan for another machine, declare\n\
         # every GPU with its memory (once one is declared, all must be; the CPU is always detected).\n\
         # The memory below is a placeholder, not this machine's figure:\n",
    );
    for name in names {
        text.push_str(&format!("#\n# [[device]]\n# name = {}\n# memory = \"24gb\"\n", quoted(&name)));
    }
    text
}
