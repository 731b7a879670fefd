//! The work of a pass, checked against formulas written out by hand for the real inventories:
//! which tokens each weight sees, attention at the real sequence lengths, conditioning once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

use mgc_compiler::compile::CompileError;
use mgc_compiler::compile::graph::{LayerGraph, workflow_to_graph};
use mgc_compiler::inventory::synth::{InventoryFixture, write_header_only};
use mgc_compiler::workflow::toml_to_workflow;
use mgc_core::Hardware;

/// A workflow of fixture models on one large GPU, with the given `[workload]` lines.
fn graph(models: &[&str], workload: &str) -> Result<LayerGraph, Vec<CompileError>> {
    graph_on(models, workload, "200gb")
}

/// The same on a GPU of `memory`.
fn graph_on(models: &[&str], workload: &str, memory: &str) -> Result<LayerGraph, Vec<CompileError>> {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[[device]]\nname = \"cuda:0\"\nmemory = \"{memory}\"\n[[device]]\nname = \"cpu\"\nmemory = \"8gb\"\n\
         [workload]\n{workload}\n"
    );
    for fixture in models {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/models/{fixture}.json"));
        let inventory: InventoryFixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        write_header_only(&inventory, "", &dir.path().join(format!("{fixture}.safetensors"))).unwrap();
        text.push_str(&format!(
            "[[model]]\nname = \"{fixture}\"\nfile = \"{fixture}.safetensors\"\ncompute = \"cuda:0\"\n"
        ));
    }
    let workflow = toml_to_workflow(&text, dir.path(), &Hardware::default)
        .map_err(|errors| errors.into_iter().map(CompileError::Spec).collect::<Vec<_>>())?;
    workflow_to_graph(&workflow)
}

fn layer_flops(graph: &LayerGraph, model: usize, name: &str) -> f64 {
    graph.models[model].layers.iter().find(|l| l.name == name).unwrap_or_else(|| panic!("no layer {name}")).flops
}

fn close(got: f64, want: f64) {
    assert!((got - want).abs() <= want * 1e-9, "got {got:e}, want {want:e}");
}

#[test]
fn flux_dev_step_flops_by_hand() {
    let graph = graph(&["flux1-dev"], "resolution = [1024, 1024]").unwrap();
    // 1024² is 64×64 patches of 16 pixels; the T5 prompt is padded to 256 tokens; cfg 1: one pass.
    let (i, t) = (4096.0_f64, 256.0_f64);
    let h = 3072.0_f64;
    // A double block: each stream's qkv (3h), proj (h), MLP (4h and back) on its own tokens;
    // both modulations (6h each) once; attention over image and text together.
    let stream = h * (3.0 * h + h + 4.0 * h + 4.0 * h);
    let stream_vectors = 3.0 * h + h + 4.0 * h + h + 2.0 * 128.0;
    let double = 2.0 * stream * (i + t)
        + 2.0 * (2.0 * 6.0 * h * h)
        + stream_vectors * (i + t)
        + 2.0 * 6.0 * h
        + 4.0 * (i + t) * (i + t) * h;
    close(layer_flops(&graph, 0, "double_blocks.0"), double);
    // A single block: linear1 (3h + 4h) and linear2 (h + 4h → h) on every token, its modulation
    // (3h) once, attention over everything.
    let single = 2.0 * h * (7.0 * h + 5.0 * h) * (i + t)
        + 2.0 * 3.0 * h * h
        + (7.0 * h + h + 2.0 * 128.0) * (i + t)
        + 3.0 * h
        + 4.0 * (i + t) * (i + t) * h;
    close(layer_flops(&graph, 0, "single_blocks.0"), single);
    // The text projection sees the text tokens only: 4096 → h.
    close(layer_flops(&graph, 0, "txt_in"), 2.0 * 4096.0 * h * t + h * t);
    let total: f64 = graph.models[0].layers.iter().map(|l| l.flops).sum();
    assert!((69.0e12..70.0e12).contains(&total), "Flux-dev step at 1024²: {total:e} FLOPs");
}

#[test]
fn wan_cross_attention_works_at_the_text_length_and_cfg_doubles_the_batch() {
    let graph = graph(&["wan2.1_t2v_1.3B_bf16"], "resolution = [832, 480]\nframes = 81").unwrap();
    let model = &graph.models[0];
    // 81 frames are 21 latent frames of 104×60, 52×30 patches each; cfg 6 runs two passes.
    assert_eq!((model.pass.image, model.pass.text, model.pass.items), (52 * 30 * 21, 512, 2));
    let (i, t, d, f) = (32760.0_f64, 512.0_f64, 1536.0_f64, 8960.0_f64);
    let per_item = 2.0 * (4.0 * d * d + 2.0 * d * d + 2.0 * d * f) * i // self-attn, cross q/o, FFN
        + 2.0 * (2.0 * d * d) * t // cross k/v on the text
        + (12.0 * d + f) * i // biases, q/k norms, norm3 on the video tokens
        + 3.0 * d * t // cross k/v biases and k norm on the text
        + 6.0 * d // modulation, added once
        + 4.0 * i * i * d // self-attention
        + 4.0 * i * t * d; // cross-attention
    close(layer_flops(&graph, 0, "blocks.0"), 2.0 * per_item);
    let cfg1 = self::graph(&["wan2.1_t2v_1.3B_bf16"], "resolution = [832, 480]\nframes = 81\ncfg = 1").unwrap();
    close(layer_flops(&cfg1, 0, "blocks.0") * 2.0, layer_flops(&graph, 0, "blocks.0"));
}

#[test]
fn hunyuan_single_blocks_attend_over_image_and_text() {
    let graph = graph(&["hunyuan_video_t2v_720p_bf16"], "resolution = [848, 480]\nframes = 73").unwrap();
    let model = &graph.models[0];
    // 73 frames are 19 latent frames of 106×60, 53×30 patches each.
    assert_eq!((model.pass.image, model.pass.text, model.pass.items), (53 * 30 * 19, 256, 1));
    let n = (53.0 * 30.0 * 19.0) + 256.0;
    let h = 3072.0;
    let without_attention = 2.0 * h * 12.0 * h * n + 2.0 * 3.0 * h * h + (8.0 * h + 256.0) * n + 3.0 * h;
    close(layer_flops(&graph, 0, "single_blocks.0"), without_attention + 4.0 * n * n * h);
}

#[test]
fn sdxl_blocks_work_at_their_own_resolution() {
    let graph = graph(&["sdxl_base_1.0_unet"], "resolution = [1024, 1024]\ncfg = 1").unwrap();
    let model = &graph.models[0];
    let first = model.layers.iter().find(|l| l.name == "input_blocks.1").unwrap();
    // A 320-channel ResBlock at 128×128: two 3×3 convolutions over 16384 positions.
    let conv = 2.0 * 16384.0 * 320.0 * 320.0 * 9.0;
    assert!(first.flops > 2.0 * conv && first.flops < 2.1 * conv, "{:e}", first.flops);
    // The deepest level is 32×32: its self-attention is over 1024 positions of 1280 channels.
    let deep = model.layers.iter().find(|l| l.name == "input_blocks.7").unwrap();
    let self_attention: f64 = deep.work.attention.iter().filter(|(_, k, _)| *k > 77.0).map(|(q, k, d)| q * k * d).sum();
    close(self_attention, 10.0 * 1024.0 * 1024.0 * 1280.0);
}

#[test]
fn frames_are_checked_against_the_family() {
    let errors = graph(&["wan2.1_t2v_1.3B_bf16"], "resolution = [832, 480]\nframes = 80").unwrap_err();
    let text = format!("{:?}", errors);
    assert!(text.contains("FramesNot4nPlus1") && text.contains("below: 77") && text.contains("above: 81"), "{text}");
    let errors = graph(&["flux1-dev"], "resolution = [1024, 1024]\nframes = 5").unwrap_err();
    assert!(format!("{:?}", errors).contains("FramesOnImageModel"));
    assert!(graph(&["wan2.1_t2v_1.3B_bf16"], "resolution = [832, 480]\nframes = 81").is_ok());
}

#[test]
fn the_text_encoders_work_at_the_prompt_length_of_the_diffusion_model() {
    let graph = graph(&["t5xxl_fp16", "clip_l", "flux1-dev"], "resolution = [1024, 1024]").unwrap();
    let tokens: Vec<(u64, u64)> = graph.models.iter().map(|m| (m.pass.text, m.pass.items)).collect();
    assert_eq!(tokens[..2], [(256, 1), (77, 1)]);
}

#[test]
fn a_video_decode_reserves_what_comfyui_does_and_is_tiled_when_it_does_not_fit() {
    let workload = "resolution = [832, 480]\nframes = 81";
    let roomy = graph(&["wan_2.1_vae"], workload).unwrap();
    let decode = roomy.models[0].decode.unwrap();
    // ComfyUI's estimate: 7000·64 bytes of BF16 per latent position of one frame, 104×60.
    assert_eq!((decode.tiled, decode.bytes), (false, 7000 * 64 * 2 * 104 * 60));
    assert_eq!(roomy.models[0].activation_bytes, decode.bytes);
    let tight = graph_on(&["wan_2.1_vae"], workload, "4gb").unwrap();
    let decode = tight.models[0].decode.unwrap();
    // 32×32 tiles overlapping by 8: 4 × 3 of them over 104×60.
    assert_eq!((decode.tiled, decode.bytes), (true, 7000 * 64 * 2 * 32 * 32));
    close(decode.factor, 12.0 * 1024.0 / (104.0 * 60.0));
    let flops = |g: &LayerGraph| g.models[0].layers.iter().map(|l| l.flops).sum::<f64>();
    close(flops(&tight), flops(&roomy) * decode.factor);
    // Every one of the 81 frames is decoded: the head convolves 4·20+1 frames at full size.
    let head = roomy.models[0].layers.iter().find(|l| l.name == "decoder.head").unwrap();
    let conv = head.work.matmuls.iter().map(|(rows, _, _)| *rows).fold(0.0, f64::max);
    close(conv, 81.0 * 832.0 * 480.0);
}

/// A header's tensors, all BF16, for the family detection.
fn inventory(tensors: &[(&str, &[u64])]) -> mgc_compiler::inventory::Inventory {
    use mgc_compiler::inventory::{Dtype, FileFormat, Inventory, PlainType, Tensor};
    let tensors = tensors
        .iter()
        .map(|(name, shape)| Tensor {
            name: (*name).to_owned(),
            dtype: Dtype::Plain(PlainType::Bf16),
            shape: shape.to_vec(),
            offset: 0,
            bytes: shape.iter().product::<u64>() * 2,
        })
        .collect();
    Inventory {
        path: "llm".into(),
        format: FileFormat::Safetensors,
        version: None,
        file_size: 0,
        header_size: 0,
        metadata: Vec::new(),
        tensors,
    }
}

#[test]
fn llm_text_encoders_are_text_encoders_with_their_layers_in_order() {
    use mgc_compiler::compile::work::{layer_work, model_pass};
    use mgc_compiler::inventory::{Family, Role, inventory_to_models};
    use mgc_compiler::workflow::{Sampling, Workload};
    // Qwen2.5-VL with Hugging Face names: attention projections with biases, a vision tower.
    let mut qwen: Vec<(String, Vec<u64>)> = vec![
        ("lm_head.weight".into(), vec![1000, 64]),
        ("model.embed_tokens.weight".into(), vec![1000, 64]),
        ("model.norm.weight".into(), vec![64]),
        ("visual.blocks.0.attn.qkv.weight".into(), vec![96, 32]),
    ];
    for i in 0..2 {
        for (part, shape) in
            [("q_proj.weight", vec![64, 64]), ("q_proj.bias", vec![64]), ("k_proj.weight", vec![16, 64])]
        {
            qwen.push((format!("model.layers.{i}.self_attn.{part}"), shape));
        }
        qwen.push((format!("model.layers.{i}.mlp.up_proj.weight"), vec![128, 64]));
    }
    let named: Vec<(&str, &[u64])> = qwen.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect();
    let models = inventory_to_models(&inventory(&named));
    let model = &models[0];
    assert_eq!((model.family, model.role), (Family::Qwen25Vl, Role::TextEncoder));
    let names: Vec<&str> = model.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["model.embed_tokens", "model.layers.0", "model.layers.1", "model.norm", "lm_head", "visual"]);
    // At Qwen-Image's prompt length: the vision tower and the logits do not run to encode a prompt.
    let sampling = Sampling::default();
    let workload = Workload::Resolution { width: 1024, height: 1024, frames: 1, batch: 1 };
    let pass = model_pass(model.family, model.role, &model.tensors, &workload, &sampling, Some(Family::QwenImage));
    assert_eq!((pass.text, pass.items), (128, 2));
    let work = |name: &str| {
        let layer = model.layers.iter().find(|l| l.name == name).unwrap();
        let tensors: Vec<_> = layer.tensors.iter().map(|&i| &model.tensors[i]).collect();
        layer_work(&pass, &tensors).flops()
    };
    assert_eq!((work("lm_head"), work("visual"), work("model.embed_tokens")), (0.0, 0.0, 0.0));
    let t = 128.0 * 2.0;
    let block = 2.0 * t * (64.0 * 64.0 + 16.0 * 64.0 + 128.0 * 64.0) + t * 64.0 + 4.0 * t * 128.0 * 64.0;
    close(work("model.layers.0"), block);

    // Llama from a GGUF: llama.cpp's names, no attention biases.
    let llama = inventory(&[
        ("token_embd.weight", &[1000, 64]),
        ("blk.0.attn_q.weight", &[64, 64]),
        ("blk.1.attn_q.weight", &[64, 64]),
        ("output_norm.weight", &[64]),
    ]);
    let models = inventory_to_models(&llama);
    assert_eq!((models[0].family, models[0].role), (Family::Llama, Role::TextEncoder));
    let names: Vec<&str> = models[0].layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["token_embd", "blk.0", "blk.1", "output_norm"]);
}

#[test]
fn each_weight_carries_the_vectors_it_sees_and_its_shape_into_the_plan() {
    let graph = graph(&["flux1-dev"], "resolution = [1024, 1024]").unwrap();
    let (i, t, h) = (4096.0_f64, 256.0_f64, 3072.0_f64);
    let layer = |name: &str| graph.models[0].layers.iter().find(|l| l.name == name).unwrap();
    let rows = |layer_name: &str, tensor: &str| {
        let l = layer(layer_name);
        let at = l.tensors.iter().position(|x| x.name == format!("{layer_name}.{tensor}")).unwrap();
        l.work.rows[at]
    };
    assert_eq!(rows("double_blocks.0", "img_attn.qkv.weight"), i);
    assert_eq!(rows("double_blocks.0", "txt_attn.qkv.weight"), t);
    assert_eq!(rows("double_blocks.0", "img_mod.lin.weight"), 1.0, "a modulation weight acts once per sample");
    assert_eq!(rows("single_blocks.0", "linear1.weight"), i + t);
    // Products as (rows, inner, outputs): the QKV projection of the image stream.
    assert!(layer("double_blocks.0").work.matmuls.contains(&(i, h, 3.0 * h)));
    // The plan carries both, for `mgc run` to compute.
    let dir = tempfile::tempdir().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/flux1-dev.json");
    let inventory: InventoryFixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    write_header_only(&inventory, "", &dir.path().join("flux.safetensors")).unwrap();
    let text = "[[device]]\nname = \"cuda:0\"\nmemory = \"200gb\"\n[[device]]\nname = \"cpu\"\nmemory = \"8gb\"\n\
                [workload]\nresolution = [1024, 1024]\n[[model]]\nname = \"flux\"\nfile = \"flux.safetensors\"\n\
                compute = \"cuda:0\"\n";
    let plan = mgc_compiler::compile::toml_to_plan(text, dir.path(), &Hardware::default).unwrap();
    let double = plan.models[0].layers.iter().find(|l| l.name == "double_blocks.0").unwrap();
    let mod_rows = double.tensors.iter().find(|x| x.name == "double_blocks.0.img_mod.lin.weight").unwrap().rows;
    assert_eq!(mod_rows, Some(1));
    let attention = &double.attention;
    assert_eq!(attention.len(), 1);
    assert_eq!((attention[0].queries, attention[0].keys, attention[0].width), (4352, 4352, 3072));
}

#[test]
fn biases_are_costed_at_the_profiles_add_rate_and_norms_at_the_norm_rate() {
    let graph = graph(&["flux1-dev"], "resolution = [1024, 1024]").unwrap();
    let (i, t, h) = (4096.0_f64, 256.0_f64, 3072.0_f64);
    let work = &graph.models[0].layers.iter().find(|l| l.name == "double_blocks.0").unwrap().work;
    // Each stream's `qkv`, `proj` and MLP biases at its tokens, the modulation's once.
    close(work.adds, (i + t) * (3.0 + 1.0 + 4.0 + 1.0) * h + 2.0 * 6.0 * h);
    assert!(work.adds < work.elementwise, "the query and key norms are not adds");
    // The same layer with and without an add rate in the profile.
    let seconds = |adds: &str| {
        let dir = tempfile::tempdir().unwrap();
        let profile = format!(
            "[[device]]\nname = \"cuda:0\"\nflops_per_second = 1e14\nseconds_per_tensor = 1e-6\n\
             elements_per_second = 1e9\n{adds}"
        );
        std::fs::write(dir.path().join("hw.toml"), profile).unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/flux1-dev.json");
        let inventory: InventoryFixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        write_header_only(&inventory, "", &dir.path().join("flux.safetensors")).unwrap();
        let text = "profile = \"hw.toml\"\n[[device]]\nname = \"cuda:0\"\nmemory = \"200gb\"\n\
                    [[model]]\nname = \"flux\"\nfile = \"flux.safetensors\"\ncompute = \"cuda:0\"\n";
        let workflow = toml_to_workflow(text, dir.path(), &Hardware::default).unwrap();
        let cost = mgc_compiler::compile::cost::CostModel::new(&workflow);
        cost.layer_seconds(work, mgc_core::Device::Cuda(0), false)
    };
    let (norm_rate, saved) = (seconds(""), seconds("adds_per_second = 4e9\n"));
    close(norm_rate - saved, work.adds / 1e9 - work.adds / 4e9);
}
