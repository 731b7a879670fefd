//! The compiler's stages, each read through the graph it annotates: placement puts a home on
//! every layer node, the schedule adds copy nodes with their data-ready and slot-reuse edges, and
//! the peaks follow from the annotated graph.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

use mgc_compiler::compile::budgets::graph_to_budgets;
use mgc_compiler::compile::cost::CostModel;
use mgc_compiler::compile::graph::{Edge, Node, workflow_to_graph};
use mgc_compiler::compile::peaks::schedule_to_peaks;
use mgc_compiler::compile::placement::budgets_to_placement;
use mgc_compiler::compile::schedule::placement_to_schedule;
use mgc_compiler::compile::simulate::MAX_AUTO_PREFETCH;
use mgc_compiler::inventory::synth::{InventoryFixture, write_header_only};
use mgc_compiler::workflow::{Workflow, toml_to_workflow};
use mgc_core::Device;
use mgc_core::Hardware;
use petgraph::Direction;
use petgraph::visit::EdgeRef;

fn workflow(models: &[(&str, &str, &str)]) -> (tempfile::TempDir, Workflow) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = "[[device]]\nname = \"cuda:0\"\nmemory = \"2gb\"\n[[device]]\nname = \"cpu\"\nmemory = \"8gb\"\n\
        [workload]\ntokens = 256\n"
        .to_owned();
    for (name, fixture, allocation) in models {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/models/{fixture}.json"));
        let inventory: InventoryFixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        write_header_only(&inventory, "", &dir.path().join(format!("{name}.safetensors"))).unwrap();
        text.push_str(&format!(
            "[[model]]\nname = \"{name}\"\nfile = \"{name}.safetensors\"\ncompute = \"cuda:0\"\nallocation = \"{allocation}\"\n"
        ));
    }
    let workflow = toml_to_workflow(&text, dir.path(), &Hardware::default).unwrap();
    (dir, workflow)
}

#[test]
fn each_stage_annotates_the_graph_the_next_one_reads() {
    let (_dir, workflow) = workflow(&[("flux", "tiny_flux", "cuda:0,40%;cpu,*")]);
    let cost = CostModel::new(&workflow);
    let graph = workflow_to_graph(&workflow).unwrap();
    assert_eq!(graph.homes(0), None, "no homes before placement");
    let budgets = graph_to_budgets(&graph, &workflow).unwrap();
    let placement = budgets_to_placement(graph, budgets, &workflow, &cost, MAX_AUTO_PREFETCH).unwrap();
    let homes = placement.graph.homes(0).unwrap();
    let model = placement.graph.models[0].clone();
    assert_eq!(homes.len(), model.layers.len());
    let on_gpu: u64 =
        model.layers.iter().zip(&homes).filter(|(_, h)| **h == Device::Cuda(0)).map(|(l, _)| l.bytes).sum();
    assert!(on_gpu <= model.bytes * 40 / 100, "the GPU keeps at most its 40%");
    assert!(homes.contains(&Device::Cpu), "the rest streams from RAM");

    let schedule = placement_to_schedule(placement, &workflow, &cost);
    let graph = &schedule.graph;
    let copies: Vec<_> = graph.graph.node_indices().filter(|&n| matches!(graph.graph[n], Node::Copy(_))).collect();
    assert!(!copies.is_empty());
    let mut carried = 0;
    for &node in &copies {
        let Node::Copy(copy) = graph.graph[node] else { unreachable!() };
        assert_eq!(copy.to, Device::Cuda(0));
        for home in &homes[copy.first..=copy.last] {
            assert_eq!(*home, copy.from, "a copy carries layers from its source");
            carried += 1;
        }
        // Data ready: the copy points at the first layer it carries.
        let ready: Vec<_> = graph
            .graph
            .edges_directed(node, Direction::Outgoing)
            .filter(|e| *e.weight() == Edge::DataReady)
            .map(|e| graph.graph[e.target()])
            .collect();
        assert_eq!(ready.len(), 1);
        assert!(matches!(ready[0], Node::Layer(l) if l.layer == copy.first));
        assert!(copy.end > copy.start);
    }
    assert_eq!(carried, homes.iter().filter(|h| **h != Device::Cuda(0)).count(), "every streamed layer once");
    // With prefetch, later copies reuse the buffers of earlier layers.
    let reuses = graph.edges().filter(|(_, _, e)| matches!(e, Edge::SlotReuse { .. })).count();
    assert!(reuses > 0 && reuses <= copies.len());
    // Copies do not break the order of one step.
    assert_eq!(graph.execution_order().len(), model.layers.len());

    let timing = schedule.timings[0].clone();
    let resident: u64 = schedule.graph.models[0]
        .layers
        .iter()
        .zip(&homes)
        .filter(|(_, h)| **h == Device::Cuda(0))
        .map(|(l, _)| l.bytes)
        .sum();
    let activations = schedule.graph.models[0].activation_bytes;
    let peaks = schedule_to_peaks(schedule, &workflow, &cost).unwrap();
    let gpu = peaks.devices.iter().find(|d| d.device == Device::Cuda(0)).unwrap();
    assert_eq!(gpu.resident, resident);
    assert_eq!(gpu.runtime_source, "default", "no profile: the compiler's figure for the runtime's own memory");
    assert!(gpu.runtime > 0);
    assert_eq!(gpu.peak, resident + timing.step.inflight_peak + activations + gpu.runtime);
    let cpu = peaks.devices.iter().find(|d| d.device == Device::Cpu).unwrap();
    assert!(cpu.runtime > 0 && cpu.peak >= cpu.resident + cpu.staging + cpu.runtime);
}

#[test]
fn models_that_take_turns_are_joined_by_a_turn_edge_and_never_run_together() {
    let (_dir, workflow) = workflow(&[
        ("high", "tiny_wan21", "cuda:0,50%;cpu,*"),
        ("low", "tiny_wan21", "cuda:0,50%;cpu,*"),
        ("clip", "clip_l", "cpu,*"),
    ]);
    let graph = workflow_to_graph(&workflow).unwrap();
    let kinds: Vec<Edge> =
        graph.edges().map(|(_, _, e)| e).filter(|e| matches!(e, Edge::ModelOrder | Edge::TakesTurns)).collect();
    assert_eq!(kinds, vec![Edge::ModelOrder, Edge::TakesTurns], "text encoder, then the two experts in turn");
    let names: Vec<Vec<&str>> = graph
        .live_together()
        .iter()
        .map(|group| group.iter().map(|&m| graph.models[m].spec.name.as_str()).collect())
        .collect();
    assert_eq!(names, vec![vec!["clip"], vec!["high"], vec!["low"]]);
}
