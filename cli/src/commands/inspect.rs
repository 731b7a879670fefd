//! `mgc inspect`: what a model file holds, from its header alone.

use std::io::Write;
use std::path::Path;

use mgc_compiler::inventory::{FileFormat, Inventory, Layer, Model, file_to_inventory, inventory_to_models};
use serde::Serialize;

use crate::Status;
use crate::args::{Format, InspectArgs};
use crate::render;

#[derive(Serialize)]
struct Report<'a> {
    file: String,
    format: FileFormat,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    file_bytes: u64,
    header_bytes: u64,
    tensor_count: usize,
    bytes: u64,
    metadata: &'a [(String, String)],
    models: &'a [Model],
}

pub fn run(args: &InspectArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    let inventory = match file_to_inventory(&args.file) {
        Ok(inventory) => inventory,
        Err(error) => {
            render::report(args.format, None, &[error], out, err)?;
            return Ok(Status::InputProblem);
        }
    };
    let models = inventory_to_models(&inventory);
    match args.format {
        Format::Json => out.write_all(json(&args.file, &inventory, &models).as_bytes())?,
        Format::Human => out.write_all(human(&args.file.display().to_string(), &inventory, &models).as_bytes())?,
    }
    Ok(Status::Ok)
}

/// What `--format json` prints about a model file.
pub fn json(file: &Path, inventory: &Inventory, models: &[Model]) -> String {
    let report = Report {
        file: file.display().to_string(),
        format: inventory.format,
        version: inventory.version,
        file_bytes: inventory.file_size,
        header_bytes: inventory.header_size,
        tensor_count: inventory.tensors.len(),
        bytes: inventory.data_bytes(),
        metadata: &inventory.metadata,
        models,
    };
    render::json_text(&report)
}

/// `23802816640` → `23,802,816,640`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut text = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            text.push(',');
        }
        text.push(c);
    }
    text
}

fn bytes_text(n: u64) -> String {
    format!("{} bytes ({})", grouped(n), mgc_core::Bytes(n))
}

fn human(name: &str, inventory: &Inventory, models: &[Model]) -> String {
    let format = match (inventory.format, inventory.version) {
        (FileFormat::Gguf, Some(v)) => format!("GGUF v{v}"),
        (FileFormat::Gguf, None) => "GGUF".to_owned(),
        (FileFormat::Safetensors, _) => "safetensors".to_owned(),
    };
    let mut text = format!(
        "{name}\n  format   {format}\n  size     {} bytes, header {}\n  tensors  {}, {} of data\n",
        grouped(inventory.file_size),
        grouped(inventory.header_size),
        inventory.tensors.len(),
        bytes_text(inventory.data_bytes()),
    );
    for (i, model) in models.iter().enumerate() {
        let prefix =
            if model.prefix.is_empty() { "no prefix".to_owned() } else { format!("prefix `{}`", model.prefix) };
        let dtypes: Vec<String> = model.dtypes.iter().map(|(d, b)| format!("{d} {}", mgc_core::Bytes(*b))).collect();
        text.push_str(&format!(
            "\nmodel {} of {}: {} ({}), {prefix}\n  tensors  {}\n  bytes    {}\n  dtypes   {}\n  layers   {}\n\n",
            i + 1,
            models.len(),
            model.family.name(),
            model.role.name(),
            model.tensor_count,
            bytes_text(model.bytes),
            dtypes.join(", "),
            model.layers.len(),
        ));
        text.push_str(&format!("  {:<44} {:>7} {:>12} {:>16}\n", "layer", "tensors", "each", "bytes"));
        for run in runs(&model.layers) {
            text.push_str(&run);
        }
    }
    text
}

/// Rows of the layer table: consecutive numbered layers of one list with the same size share a row.
fn runs(layers: &[Layer]) -> Vec<String> {
    let split = |name: &str| -> Option<(String, u64)> {
        let (list, number) = name.rsplit_once('.')?;
        Some((list.to_owned(), number.parse().ok()?))
    };
    let mut rows = Vec::new();
    let mut i = 0;
    while let Some(first) = layers.get(i) {
        let mut j = i + 1;
        if let Some((list, start)) = split(&first.name) {
            while let Some(next) = layers.get(j) {
                let same = split(&next.name) == Some((list.clone(), start.saturating_add((j - i) as u64)))
                    && next.bytes == first.bytes
                    && next.tensor_count == first.tensor_count;
                if !same {
                    break;
                }
                j += 1;
            }
            if j - i > 1 {
                let name = format!("{list}.{start}..{} ({})", start.saturating_add((j - i - 1) as u64), j - i);
                let total = first.bytes * (j - i) as u64;
                rows.push(format!(
                    "  {name:<44} {:>7} {:>12} {:>16}\n",
                    first.tensor_count,
                    mgc_core::Bytes(first.bytes).to_string(),
                    grouped(total)
                ));
                i = j;
                continue;
            }
        }
        rows.push(format!(
            "  {:<44} {:>7} {:>12} {:>16}\n",
            first.name,
            first.tensor_count,
            mgc_core::Bytes(first.bytes).to_string(),
            grouped(first.bytes)
        ));
        i += 1;
    }
    rows
}
