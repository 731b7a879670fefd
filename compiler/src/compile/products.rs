//! The distinct matrix products a device computes over a run: libtorch's math library generates
//! kernels for each shape it meets and keeps them for the rest of the run (`product_bytes` in a
//! profile), so the runtime's memory grows with these, not with how often they run.
//!
//! The runtime computes a layer's products as `mgc run` does (`runtime/src/exec/compute.rs`):
//! each 2-D float weight, not a lookup table, applied to its rows; a convolution as one matrix of
//! `outputs × (channels × kernel)`; an attention's `QKᵀ` and `AV`; each in chunks of rows that fit
//! a third of the model's activation arena, so that a product's shapes are its chunk and what is
//! left after the last whole one. Counted here the same way.

use std::collections::BTreeSet;

use mgc_core::Device;
use mgc_plan::is_lookup;

use super::graph::{GraphLayer, GraphModel, LayerGraph};
use crate::inventory::{Dtype, Tensor};

/// `(dtype, rows, inner, outputs)`: a product's dtype as computed, and its shape.
type Product = (&'static str, u64, u64, u64);

/// Bytes of attention scores a run computes at once without an arena (the runtime's
/// `SCORES_BYTES`).
const SCORES_BYTES: u64 = 8 << 20;

/// The distinct products the models computing on `device` compute, over the whole run.
pub fn distinct_products(graph: &LayerGraph, device: Device) -> u64 {
    let mut seen = BTreeSet::new();
    for model in graph.models.iter().filter(|m| m.spec.compute == device) {
        model_products(model, &mut seen);
    }
    seen.len() as u64
}

fn model_products(model: &GraphModel, seen: &mut BTreeSet<Product>) {
    let region = arena_region(model);
    for layer in &model.layers {
        let mut layer_kind = None;
        for (i, t) in layer.tensors.iter().enumerate() {
            let rows = rows_of(model, layer, i);
            let Some(kind) = computed_as(t.dtype) else { continue };
            if rows == 0 && !is_lookup(&t.name) {
                continue;
            }
            layer_kind.get_or_insert(kind);
            if let Some((inner, outputs)) = matrix(t) {
                chunked(seen, region, kind, rows, inner, outputs);
            }
        }
        let kind @ (_, element) = layer_kind.unwrap_or(BF16);
        for &(queries, keys, width) in &layer.work.attention {
            let whole = |x: f64| (x.round().max(1.0)) as u64;
            let (queries, keys, width) = (whole(queries), whole(keys), whole(width));
            let room = if region > 0 { region / element } else { SCORES_BYTES / element };
            let chunk = (room / keys).clamp(1, queries);
            for n in pieces(queries, chunk) {
                seen.insert((kind.0, n, width, keys));
                seen.insert((kind.0, n, keys, width));
            }
        }
    }
}

/// Bytes of the largest norm's input among the models computing on `device`: a 1-D weight that
/// is not a bias, over its rows, as much of them at once as a third of the model's arena holds
/// (the runtime's chunks). A norm's temporaries are a multiple of it (`norm_workspace` in a
/// profile).
pub fn largest_norm(graph: &LayerGraph, device: Device) -> u64 {
    let mut largest = 0;
    for model in graph.models.iter().filter(|m| m.spec.compute == device) {
        let region = arena_region(model);
        for layer in &model.layers {
            for (i, t) in layer.tensors.iter().enumerate() {
                let ([width], Some((_, element))) = (t.shape.as_slice(), computed_as(t.dtype)) else { continue };
                if t.name.ends_with("bias") {
                    continue;
                }
                let at_once = rows_at_once(region, element, rows_of(model, layer, i), *width, *width);
                largest = largest.max(at_once.saturating_mul(*width).saturating_mul(element));
            }
        }
    }
    largest
}

/// Weights (elements) of the largest weight the models computing on `device` make computable
/// before applying it: a GGUF block type, dequantized whenever its layer runs, or an 8-bit float
/// the layer applies, converted to BF16 (as `mgc run` does).
pub fn largest_dequantized(graph: &LayerGraph, device: Device) -> u64 {
    let mut largest = 0;
    for model in graph.models.iter().filter(|m| m.spec.compute == device) {
        for layer in &model.layers {
            for (i, t) in layer.tensors.iter().enumerate() {
                let rows = rows_of(model, layer, i);
                let converted = matches!(t.dtype.name(), "F8_E4M3" | "F8_E5M2") && (rows > 0 || is_lookup(&t.name));
                // A ggml type in blocks of more than one weight is quantized; F32, F16 and BF16
                // are blocks of one.
                let quantized = matches!(t.dtype, Dtype::Ggml(g) if g.block_size > 1);
                if quantized || converted {
                    largest = largest.max(t.shape.iter().product::<u64>());
                }
            }
        }
    }
    largest
}

/// The bytes of one of a model's three arena regions: they start at multiples of 256 bytes; 0
/// without an arena.
fn arena_region(model: &GraphModel) -> u64 {
    model.activation_bytes / 3 / 256 * 256
}

/// The vectors the `i`th weight of `layer` is applied to in a step (the model's tokens where
/// the work does not say).
fn rows_of(model: &GraphModel, layer: &GraphLayer, i: usize) -> u64 {
    layer.work.rows.get(i).map_or(model.tokens, |&r| r.round().max(0.0) as u64)
}

/// Of `rows` vectors of `inner` in and `outputs` out, how many go through at once: as many as
/// a region holds of the wider (one at least), all of them without an arena.
fn rows_at_once(region: u64, element: u64, rows: u64, inner: u64, outputs: u64) -> u64 {
    if region == 0 {
        return rows;
    }
    let capacity = region / element;
    (capacity / inner.max(1)).min(capacity / outputs.max(1)).max(1).min(rows)
}

/// `rows` through `inner × outputs` in chunks of the rows a region holds.
fn chunked(seen: &mut BTreeSet<Product>, region: u64, kind: Kind, rows: u64, inner: u64, outputs: u64) {
    let (name, element) = kind;
    let rows = rows.max(1);
    for n in pieces(rows, rows_at_once(region, element, rows, inner, outputs)) {
        seen.insert((name, n, inner, outputs));
    }
}

/// The sizes of `total` taken `chunk` at a time: the chunk, and what is left after the last
/// whole one.
fn pieces(total: u64, chunk: u64) -> impl Iterator<Item = u64> {
    let rest = total % chunk;
    std::iter::once(chunk.min(total)).chain((rest > 0 && total > chunk).then_some(rest))
}

/// A weight's `(inner, outputs)` where the runtime applies it as a matrix product: a 2-D
/// weight that is not a lookup table, or a convolution's kernel.
fn matrix(t: &Tensor) -> Option<(u64, u64)> {
    let outputs = *t.shape.first()?;
    match t.shape.as_slice() {
        [_, inner] if !is_lookup(&t.name) => Some((*inner, outputs)),
        [_] | [_, _] => None,
        shape if shape.iter().filter(|&&d| d > 1).count() > 1 => Some((shape.iter().skip(1).product(), outputs)),
        _ => None,
    }
}

/// A dtype as the runtime computes with it, and the bytes of its element.
type Kind = (&'static str, u64);

const BF16: Kind = ("BF16", 2);

/// The dtype the runtime computes with for `dtype`: 8-bit floats and quantized blocks in BF16;
/// None for a dtype it does not compute with (integers, flags).
fn computed_as(dtype: Dtype) -> Option<Kind> {
    match dtype.name() {
        "F64" => Some(("F64", 8)),
        "F32" => Some(("F32", 4)),
        "F16" => Some(("F16", 2)),
        "BF16" | "F8_E4M3" | "F8_E5M2" => Some(BF16),
        _ if matches!(dtype, Dtype::Ggml(_)) => Some(BF16),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_is_its_chunk_and_what_is_left() {
        assert_eq!(pieces(10, 4).collect::<Vec<_>>(), [4, 2]);
        assert_eq!(pieces(8, 4).collect::<Vec<_>>(), [4]);
        assert_eq!(pieces(3, 3).collect::<Vec<_>>(), [3]);
        let mut seen = BTreeSet::new();
        // A region of 1024 BF16 elements: 8 rows of 128 at once, 20 rows as 8, 8 and 4.
        chunked(&mut seen, 2048, BF16, 20, 128, 64);
        // The same weight again, and one too wide for a row: one row at a time.
        chunked(&mut seen, 2048, BF16, 20, 128, 64);
        chunked(&mut seen, 2048, BF16, 3, 4096, 64);
        // Without an arena, whole; in F16, a product of its own.
        chunked(&mut seen, 0, BF16, 20, 128, 64);
        chunked(&mut seen, 0, ("F16", 2), 20, 128, 64);
        let shapes: Vec<_> = seen.into_iter().collect();
        assert_eq!(
            shapes,
            [
                ("BF16", 1, 4096, 64),
                ("BF16", 4, 128, 64),
                ("BF16", 8, 128, 64),
                ("BF16", 20, 128, 64),
                ("F16", 20, 128, 64)
            ]
        );
    }
}
