#![expect(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

use super::*;

fn import(text: &str) -> Imported {
    comfy_to_imported(&json_to_comfy(text).unwrap())
}

#[test]
fn ui_widgets_map_by_position() {
    let imported = import(
        r#"{"nodes": [
            {"id": 3, "type": "UNETLoaderDisTorch2MultiGPU", "mode": 0,
             "widgets_values": ["flux1-dev.safetensors", "default", "cuda:0", 8.000000000000002, "cpu", "", true]},
            {"id": 4, "type": "DualCLIPLoaderMultiGPU",
             "widgets_values": ["t5xxl_fp16.safetensors", "clip_l.safetensors", "flux", "cuda:1"]},
            {"id": 5, "type": "KSampler", "widgets_values": [1, "randomize", 20]}
        ]}"#,
    );
    assert_eq!(imported.format, Format::Ui);
    let unet = &imported.models[0];
    assert_eq!((unet.name.as_str(), unet.compute.as_str()), ("unet_3", "cuda:0"));
    assert_eq!(unet.allocation.text(&unet.compute), "#cuda:0;8.0;cpu");
    let names: Vec<_> = imported.models.iter().map(|m| (m.name.as_str(), m.file.as_str())).collect();
    assert_eq!(
        names,
        [
            ("unet_3", "flux1-dev.safetensors"),
            ("clip_4_1", "t5xxl_fp16.safetensors"),
            ("clip_4_2", "clip_l.safetensors")
        ]
    );
    assert_eq!(imported.models[1].allocation, Allocation::Whole);
    assert!(imported.skipped.is_empty());
}

#[test]
fn api_inputs_map_by_name_and_links_have_no_value() {
    let imported = import(
        r#"{"7": {"class_type": "UNETLoaderDisTorch2MultiGPU", "inputs": {"unet_name": "wan.safetensors",
              "weight_dtype": "default", "compute_device": "cuda:0", "virtual_vram_gb": 0,
              "donor_device": "cpu", "expert_mode_allocations": "cuda:0,4gb;cpu,*#cuda:0"}},
            "8": {"class_type": "VAELoaderMultiGPU", "inputs": {"vae_name": ["12", 0], "device": "cuda:0"}}}"#,
    );
    assert_eq!(imported.format, Format::Api);
    assert_eq!(imported.models.len(), 1);
    assert_eq!(imported.models[0].allocation, Allocation::Expert("cuda:0,4gb;cpu,*".into()));
    assert_eq!(imported.skipped[0].node_id, "8");
    assert!(imported.skipped[0].reason.contains("`vae_name` has no value"), "{:?}", imported.skipped);
}

#[test]
fn virtual_vram_of_zero_is_the_whole_model_on_the_compute_device() {
    let imported = import(
        r#"{"1": {"class_type": "CLIPLoaderDisTorch2MultiGPU", "inputs": {"clip_name": "t5.safetensors",
            "type": "flux", "device": "cpu", "virtual_vram_gb": 0.0, "donor_device": "cpu", "expert_mode_allocations": ""}}}"#,
    );
    assert_eq!(imported.models[0].allocation.text("cpu"), "cpu,*");
}

#[test]
fn unmappable_loaders_are_listed_and_other_nodes_ignored() {
    let imported = import(
        r#"{"nodes": [
            {"id": 1, "type": "CheckpointLoaderSimple", "widgets_values": ["sd15.safetensors"]},
            {"id": 2, "type": "WanVideoBlockSwapMultiGPU", "widgets_values": []},
            {"id": 9, "type": "UnetLoaderGGUFMultiGPU", "mode": 4, "widgets_values": ["a.gguf", "cuda:0"]},
            {"id": 10, "type": "UNETLoaderMultiGPU", "widgets_values": ["a.safetensors", "default", "tpu:0"]},
            {"id": 11, "type": "SaveImage", "widgets_values": ["out"]},
            {"id": 12, "type": "WanVideoSamplerMultiGPU", "widgets_values": []}
        ]}"#,
    );
    assert!(imported.models.is_empty());
    let skipped: Vec<_> = imported.skipped.iter().map(|s| s.node_id.as_str()).collect();
    assert_eq!(skipped, ["1", "2", "9", "10"]);
}

#[test]
fn what_is_not_a_workflow_says_so() {
    let cases = [
        ("not json", "not JSON"),
        ("[1, 2]", "not a ComfyUI workflow: the file holds an array"),
        ("{}", "not a ComfyUI workflow: an empty object"),
        (r#"{"a": 1}"#, "not a ComfyUI workflow"),
        (r#"{"nodes": 3}"#, "`nodes` is a number"),
        (r#"{"nodes": [{"id": 1}]}"#, "it has no `type`"),
    ];
    for (text, message) in cases {
        let error = json_to_comfy(text).unwrap_err();
        assert!(error.to_string().contains(message), "{text}: {error}");
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(json_to_comfy(&deep), Err(ImportError::TooDeep { .. })));
}

#[test]
fn the_toml_names_files_devices_and_skipped_nodes() {
    let imported = import(
        r#"{"nodes": [
            {"id": 3, "type": "UNETLoaderDisTorch2MultiGPU",
             "widgets_values": ["flux1-dev.safetensors", "default", "cuda:0", 4, "cuda:1", "", true]},
            {"id": 4, "type": "LoraLoader", "widgets_values": []}
        ]}"#,
    );
    let text = imported_to_toml(&imported, "flux.json", &|m| Located {
        path: format!("models/{}/{}", m.folders[0], m.file),
        found: false,
    });
    for line in [
        "#   node 4 `LoraLoader`: not a ComfyUI-MultiGPU loader",
        "#   models/diffusion_models/flux1-dev.safetensors",
        "# name = \"cuda:1\"",
        "allocation = \"#cuda:0;4.0;cuda:1\"",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    let spec = crate::spec::toml_to_spec(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(spec.model.len(), 1);
    assert!(spec.device.is_empty());
}

#[test]
fn the_packs_wanvideo_loader_maps_like_a_distorch2_loader() {
    let imported = import(
        r#"{"nodes": [
            {"id": 9, "type": "WanVideoModelLoaderMGC",
             "widgets_values": ["wan2.1_t2v_14B_bf16.safetensors", "bf16", "disabled", "offload_device",
                                "cuda:0", 12.0, "cpu", "", "sdpa", ""]},
            {"id": 10, "type": "Florence2ModelLoaderMGC",
             "widgets_values": ["Florence-2-base", "fp16", "sdpa", "cuda:1", false, ""]}
        ]}"#,
    );
    let wan = &imported.models[0];
    assert_eq!((wan.file.as_str(), wan.compute.as_str()), ("wan2.1_t2v_14B_bf16.safetensors", "cuda:0"));
    assert_eq!(wan.allocation.text(&wan.compute), "#cuda:0;12.0;cpu");
    let florence = &imported.models[1];
    assert_eq!(florence.compute, "cuda:1");
    assert_eq!(florence.allocation, Allocation::Whole);
    assert!(imported.skipped.is_empty(), "{:?}", imported.skipped);
}
