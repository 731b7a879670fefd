//! Every published model inventory, written as a header-only file and read back: exact totals,
//! families, and the layer table (snapshotted).
#![expect(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mgc_compiler::inventory::synth::{InventoryFixture, write_header_only};
use mgc_compiler::inventory::{Family, FileFormat, Role, file_to_inventory, inventory_to_models};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 20, "fixtures missing in {}", dir.display());
    paths
}

fn load(path: &Path) -> (InventoryFixture, serde_json::Value) {
    let text = std::fs::read_to_string(path).unwrap();
    (serde_json::from_str(&text).unwrap(), serde_json::from_str(&text).unwrap())
}

/// The family and role each inventory must be detected as (prefix → family).
fn expected(name: &str) -> Vec<(&'static str, Family, Role)> {
    use Family as F;
    use Role as R;
    match name {
        "clip_g" => vec![("", F::ClipG, R::TextEncoder)],
        "clip_l" => vec![("", F::ClipL, R::TextEncoder)],
        "flux1-dev" | "flux1-schnell" | "tiny_flux" => vec![("", F::Flux, R::Diffusion)],
        "flux_ae" => vec![("", F::FluxVae, R::Vae)],
        "hunyuan_video_t2v_720p_bf16" => vec![("", F::HunyuanVideo, R::Diffusion)],
        "qwen_image_bf16" => vec![("", F::QwenImage, R::Diffusion)],
        "sd3.5_large_mmdit" | "sd3.5_medium_mmdit" => {
            vec![("model.diffusion_model.", F::Sd3, R::Diffusion)]
        }
        "sdxl_base_1.0_checkpoint" => vec![
            ("conditioner.embedders.0.", F::ClipL, R::TextEncoder),
            ("conditioner.embedders.1.", F::ClipG, R::TextEncoder),
            ("model.diffusion_model.", F::Sdxl, R::Diffusion),
            ("first_stage_model.", F::SdVae, R::Vae),
        ],
        "sdxl_base_1.0_unet" => vec![("model.diffusion_model.", F::Sdxl, R::Diffusion)],
        "sdxl_vae" => vec![("", F::SdVae, R::Vae)],
        "t5xxl_fp16" => vec![("", F::T5, R::TextEncoder)],
        "umt5_xxl_fp16" => vec![("", F::Umt5, R::TextEncoder)],
        "wan2.2_ti2v_5B_fp16" => vec![("", F::Wan22, R::Diffusion)],
        "wan_2.1_vae" => vec![("", F::WanVae, R::Vae)],
        n if n.starts_with("wan2.1_") || n == "tiny_wan21" => vec![("", F::Wan21, R::Diffusion)],
        other => panic!("no expectation for fixture {other}"),
    }
}

#[test]
fn every_inventory_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for path in fixtures() {
        let (fixture, raw) = load(&path);
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let file = dir.path().join(format!("{name}.safetensors"));
        let prefix = fixture.prefix.clone().unwrap_or_default();
        let size = write_header_only(&fixture, &prefix, &file).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().len(), size);
        if let Some(published) = raw["header_only_file_bytes"].as_u64() {
            assert_eq!(size, published, "{name}: file size differs from the reference generator");
        }

        let inventory = file_to_inventory(&file).unwrap();
        assert_eq!(inventory.format, FileFormat::Safetensors);
        assert_eq!(inventory.tensors.len() as u64, raw["tensor_count"].as_u64().unwrap(), "{name}");
        assert_eq!(inventory.data_bytes(), raw["data_bytes"].as_u64().unwrap(), "{name}");

        let models = inventory_to_models(&inventory);
        let found: Vec<(String, Family, Role)> = models.iter().map(|m| (m.prefix.clone(), m.family, m.role)).collect();
        let want: Vec<(String, Family, Role)> =
            expected(&name).into_iter().map(|(p, f, r)| (p.to_owned(), f, r)).collect();
        assert_eq!(found, want, "{name}");
        assert_eq!(models.iter().map(|m| m.bytes).sum::<u64>(), inventory.data_bytes(), "{name}");
        for model in &models {
            let in_layers: usize = model.layers.iter().map(|l| l.tensor_count).sum();
            assert_eq!(in_layers, model.tensor_count, "{name}: every tensor in exactly one layer");
            assert_eq!(model.layers.iter().map(|l| l.bytes).sum::<u64>(), model.bytes, "{name}");
        }

        let mut table = String::new();
        for model in &models {
            writeln!(
                table,
                "model `{}` {} {} tensors={} bytes={}",
                model.prefix,
                model.family.name(),
                model.role.name(),
                model.tensor_count,
                model.bytes
            )
            .unwrap();
            for layer in &model.layers {
                writeln!(table, "  {:<48} {:>5} {:>14}", layer.name, layer.tensor_count, layer.bytes).unwrap();
            }
        }
        insta::assert_snapshot!(format!("layers__{name}"), table);
    }
}

#[test]
fn flux_dev_blocks_run_in_numeric_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/flux1-dev.json");
    let (fixture, _) = load(&path);
    let file = dir.path().join("flux1-dev.safetensors");
    write_header_only(&fixture, "", &file).unwrap();
    let inventory = file_to_inventory(&file).unwrap();
    assert_eq!(inventory.tensors.len(), 780);
    assert_eq!(inventory.data_bytes(), 23_802_816_640);
    let models = inventory_to_models(&inventory);
    let names: Vec<&str> = models[0].layers.iter().map(|l| l.name.as_str()).collect();
    let double: Vec<String> = (0..19).map(|i| format!("double_blocks.{i}")).collect();
    let single: Vec<String> = (0..38).map(|i| format!("single_blocks.{i}")).collect();
    let blocks: Vec<&str> = names.iter().copied().filter(|n| n.contains("_blocks.")).collect();
    let expected: Vec<&str> = double.iter().chain(&single).map(String::as_str).collect();
    assert_eq!(blocks, expected, "blocks.2 before blocks.10, doubles before singles");
    assert_eq!(names.first(), Some(&"img_in"));
    assert_eq!(names.last(), Some(&"final_layer"));
}
