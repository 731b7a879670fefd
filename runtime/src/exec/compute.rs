//! The arithmetic of one layer: its real weights, each applied to as many vectors as the plan
//! says the model applies it to in a step, and the layer's attention products at their lengths:
//! the work the plan's prediction counts, with the model's own weights.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use tch::{Device, Kind, Tensor};

use super::error::RunError;
use super::load::Weight;

/// Where a layer computes: deterministic hidden states of every shape its weights ask for, and
/// room for what it computes.
///
/// With an arena (a run: the plan's activation bytes for the model, allocated and touched once,
/// so that a run holds what its plan reserves and no more), the arena is three equal regions:
/// the inputs, the outputs, and an attention's scores; a product whose rows do not fit goes
/// through in chunks of rows that do. Without one (the probe's small layers), every input is a
/// view of one buffer per dtype and every output a tensor of its own.
///
/// An input element's value depends only on its index, so a shape reads the same values
/// whatever was asked before, arena or not.
pub struct Inputs {
    tokens: i64,
    device: Device,
    arena: Option<Arena>,
    buffers: Vec<(Kind, Tensor)>,
}

/// The run's activation memory, in three regions of `region` bytes.
struct Arena {
    bytes: Tensor,
    region: i64,
    /// The inputs region: the dtype its pattern is written in, and how many elements of it.
    filled: Option<(Kind, i64)>,
}

/// Which third of the arena.
#[derive(Clone, Copy)]
enum Region {
    Inputs = 0,
    Outputs = 1,
    Scores = 2,
}

impl Inputs {
    /// Inputs of `tokens` rows (where a plan does not say a weight's rows) on `device`, in an
    /// arena of `arena_bytes` (none when 0).
    pub fn new(tokens: u64, device: Device, arena_bytes: u64) -> Result<Self, RunError> {
        // Each region starts at a multiple of 256 bytes, so that a view of any dtype is aligned.
        let region = i64::try_from(arena_bytes / 3 / 256 * 256).unwrap_or(i64::MAX);
        let arena = if region > 0 {
            // Zeroed, so that every page is resident from the start, as the plan counts it.
            let bytes = Tensor::f_zeros([region * 3], (Kind::Uint8, device))?;
            Some(Arena { bytes, region, filled: None })
        } else {
            None
        };
        Ok(Self { tokens: i64::try_from(tokens).unwrap_or(1).max(1), device, arena, buffers: Vec::new() })
    }

    /// Whether the inputs and outputs are views of an arena, as a run's are.
    #[cfg(test)]
    pub fn has_arena(&self) -> bool {
        self.arena.is_some()
    }

    /// Elements of `kind` one region holds; unbounded without an arena.
    fn capacity(&self, kind: Kind) -> i64 {
        self.arena.as_ref().map_or(i64::MAX, |a| a.region / element_bytes(kind))
    }

    /// Rows of `inner` in and `outputs` out that go through at once.
    fn rows_at_once(&self, inner: i64, outputs: i64, kind: Kind) -> i64 {
        let capacity = self.capacity(kind);
        (capacity / inner.max(1)).min(capacity / outputs.max(1)).max(1)
    }

    /// A view of `shape` in `region` of the arena, when there is one and it fits.
    fn view(&self, region: Region, shape: &[i64], kind: Kind) -> Result<Option<Tensor>, RunError> {
        let Some(arena) = &self.arena else { return Ok(None) };
        let n: i64 = shape.iter().product();
        let bytes = n.saturating_mul(element_bytes(kind));
        if bytes > arena.region {
            return Ok(None);
        }
        let at = arena.region * region as i64;
        Ok(Some(arena.bytes.f_narrow(0, at, bytes)?.f_view_dtype(kind)?.f_reshape(shape)?))
    }

    /// Room for an output of `shape`: in the arena's outputs region, or a tensor of its own.
    fn output(&self, shape: &[i64], kind: Kind) -> Result<Option<Tensor>, RunError> {
        self.view(Region::Outputs, shape, kind)
    }

    fn get(&mut self, shape: &[i64], kind: Kind) -> Result<Tensor, RunError> {
        let n: i64 = shape.iter().product();
        if let Some(view) = self.view(Region::Inputs, shape, kind)? {
            let arena = self.arena.as_mut().ok_or_else(|| RunError::Torch("no arena".into()))?;
            if arena.filled.is_none_or(|(k, filled)| k != kind || filled < n) {
                let bytes = n * element_bytes(kind);
                fill(&arena.bytes.f_narrow(0, 0, bytes)?.f_view_dtype(kind)?, self.device, kind)?;
                arena.filled = Some((kind, n));
            }
            return Ok(view);
        }
        let slot = self.buffers.iter().position(|(k, t)| *k == kind && t.numel() >= usize::try_from(n).unwrap_or(0));
        let buffer = match slot {
            Some(i) => self.buffers.get(i).map(|(_, t)| t.shallow_clone()),
            None => None,
        };
        let buffer = match buffer {
            Some(buffer) => buffer,
            None => {
                let x = Tensor::f_empty([n.max(1)], (kind, self.device))?;
                fill(&x, self.device, kind)?;
                self.buffers.retain(|(k, _)| *k != kind);
                self.buffers.push((kind, x.shallow_clone()));
                x
            }
        };
        Ok(buffer.f_narrow(0, 0, n)?.f_reshape(shape)?)
    }
}

/// A tensor of `shape` holding the inputs' pattern, as a run's layers read it.
pub(super) fn pattern(shape: &[i64], kind: Kind, device: Device) -> Result<Tensor, RunError> {
    let x = Tensor::f_empty([shape.iter().product::<i64>().max(1)], (kind, device))?;
    fill(&x, device, kind)?;
    Ok(x.f_narrow(0, 0, shape.iter().product())?.f_reshape(shape)?)
}

/// Writes the inputs' pattern into `x` (1-D): 251 values from -0.5 up, repeated, by doubling
/// copies within `x`, so that no temporary larger than the pattern is made.
fn fill(x: &Tensor, device: Device, kind: Kind) -> Result<(), RunError> {
    let n = i64::try_from(x.numel()).unwrap_or(i64::MAX);
    if n == 0 {
        return Ok(());
    }
    let first = n.min(251);
    let pattern = Tensor::f_arange(251, (Kind::Float, device))?.g_div_scalar(251.0).g_sub_scalar(0.5);
    x.f_narrow(0, 0, first)?.f_copy_(&pattern.f_narrow(0, 0, first)?.f_to_kind(kind)?)?;
    let mut done = first;
    while done < n {
        let m = done.min(n - done);
        x.f_narrow(0, done, m)?.f_copy_(&x.f_narrow(0, 0, m)?)?;
        done += m;
    }
    Ok(())
}

/// Bytes of one element of `kind`.
fn element_bytes(kind: Kind) -> i64 {
    match kind {
        Kind::Double | Kind::Int64 | Kind::ComplexFloat => 8,
        Kind::Float | Kind::Int => 4,
        Kind::Half | Kind::BFloat16 | Kind::Int16 => 2,
        _ => 1,
    }
}

/// What a layer computes in one step, from its plan.
#[derive(Clone, Debug, Default)]
pub struct Work {
    /// Per weight, in order: the vectors it is applied to; `None` (a plan that does not say): the
    /// model's tokens.
    pub rows: Vec<Option<i64>>,
    /// `(queries, keys, width)` of each attention.
    pub attention: Vec<(i64, i64, i64)>,
}

impl Work {
    pub fn of(layer: &mgc_plan::LayerPlan) -> Self {
        let whole = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Self {
            rows: layer.tensors.iter().map(|t| t.rows.map(whole)).collect(),
            attention: layer.attention.iter().map(|a| (whole(a.queries), whole(a.keys), whole(a.width))).collect(),
        }
    }
}

/// Bytes of attention scores computed at once: queries go through in chunks this size allows, so
/// that a long sequence needs no `queries × keys` matrix.
const SCORES_BYTES: i64 = 8 << 20;

fn is_float(kind: Kind) -> bool {
    matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 | Kind::Float8e4m3fn | Kind::Float8e5m2)
}

/// Applies a layer's weights and computes its attention; returns a checksum of everything it
/// computed. The checksum is summed on the compute device and read once per layer: one wait for
/// the device per layer, not per weight.
pub fn layer(weights: &[Weight], work: &Work, inputs: &mut Inputs) -> Result<f64, RunError> {
    let mut sum = Sum(None);
    let mut kind_seen = None;
    for (i, w) in weights.iter().enumerate() {
        let rows = work.rows.get(i).copied().flatten().unwrap_or(inputs.tokens);
        let name = &w.name;
        let dequantized = match &w.quantized {
            Some((dtype, shape)) => Some(super::gguf::dequantize(&w.tensor, dtype, shape)?),
            None => None,
        };
        let weight = dequantized.as_ref().unwrap_or(&w.tensor);
        let kind = weight.kind();
        if rows == 0 && !mgc_plan::is_lookup(name) {
            // Not used by a step (a VAE's encoder, a text encoder's logits): its first element
            // only, so that the checksum still sees it arrive.
            if weight.numel() > 0 {
                sum.add(weight.f_flatten(0, -1)?.f_narrow(0, 0, 1)?.f_sum(Kind::Double)?)?;
            }
            continue;
        }
        if !is_float(kind) {
            sum.add(weight.f_sum(Kind::Double)?)?;
            continue;
        }
        // 8-bit floats have no matmul on every device: compute in BF16, as ComfyUI does.
        let (w, kind) = if matches!(kind, Kind::Float8e4m3fn | Kind::Float8e5m2) {
            (weight.f_to_kind(Kind::BFloat16)?, Kind::BFloat16)
        } else {
            (weight.shallow_clone(), kind)
        };
        let size = w.size();
        kind_seen.get_or_insert(kind);
        if mgc_plan::is_lookup(name) && size.len() == 2 {
            // An embedding: one row gathered per token, as the model does.
            let rows = size.first().copied().unwrap_or(1).max(1);
            let index = Tensor::f_arange(inputs.tokens, (Kind::Int64, w.device()))?.remainder(rows);
            let width = size.get(1).copied().unwrap_or(1);
            let out = match inputs.output(&[inputs.tokens, width], kind)? {
                Some(room) => w.f_index_select_out(&room, 0, &index)?,
                None => w.f_index_select(0, &index)?,
            };
            sum.add(first_row(&out)?)?;
            continue;
        }
        let first = match size.as_slice() {
            [outputs, inner] => {
                let wt = w.f_transpose(0, 1)?;
                by_rows(inputs, rows, *inner, *outputs, kind, |x, out| product(x, &wt, out))?
            }
            [n] if name.ends_with("bias") => by_rows(inputs, rows, *n, *n, kind, |x, out| match out {
                Some(out) => Ok(x.f_add_out(out, &w)?),
                None => Ok(x.f_add(&w)?),
            })?,
            [n] => by_rows(inputs, rows, *n, *n, kind, |x, out| norm(x, out, &w, *n))?,
            // A convolution's arithmetic, as the plan counts it: each of `rows` positions through
            // the kernel as one matrix of `outputs × (channels × kernel)` (what im2col makes of
            // it), without a convolution kernel's own buffers.
            [outputs, _, ..] if size.iter().filter(|&&d| d > 1).count() > 1 => {
                let inner = size.iter().skip(1).product::<i64>();
                let wt = w.f_reshape([*outputs, inner])?.f_transpose(0, 1)?;
                by_rows(inputs, rows, inner, *outputs, kind, |x, out| product(x, &wt, out))?
            }
            _ => w.f_sum(Kind::Double)?,
        };
        sum.add(first)?;
    }
    let kind = kind_seen.unwrap_or(Kind::BFloat16);
    for &(queries, keys, width) in &work.attention {
        sum.add(attention(inputs, queries, keys, width, kind)?)?;
    }
    Ok(sum.0.map_or(0.0, |t| t.double_value(&[])))
}

/// `QKᵀ` then `AV` over `queries × keys` at `width`, the 4·q·k·d the cost model counts, queries
/// in chunks whose scores fit the arena's scores region (or [`SCORES_BYTES`] without an arena);
/// returns the sum of the first output row.
fn attention(inputs: &mut Inputs, queries: i64, keys: i64, width: i64, kind: Kind) -> Result<Tensor, RunError> {
    let (queries, keys, width) = (queries.max(1), keys.max(1), width.max(1));
    let room = if inputs.arena.is_some() { inputs.capacity(kind) } else { SCORES_BYTES / element_bytes(kind) };
    let chunk = (room / keys).clamp(1, queries);
    // Keys as stored `keys × width` and values as `width × keys`: both products read their second
    // matrix transposed, as a layer reads its weights (the layout the probe measures; values
    // stored the other way run several times slower on some CPUs).
    let kt = inputs.get(&[keys, width], kind)?.f_transpose(0, 1)?;
    let vt = inputs.get(&[width, keys], kind)?.f_transpose(0, 1)?;
    let mut first = None;
    let mut at = 0;
    while at < queries {
        let n = chunk.min(queries - at);
        let q = inputs.get(&[n, width], kind)?;
        let scores = product(&q, &kt, inputs.view(Region::Scores, &[n, keys], kind)?.as_ref())?;
        let out = product(&scores, &vt, inputs.output(&[n, width], kind)?.as_ref())?;
        if first.is_none() {
            first = Some(first_row(&out)?);
        }
        at += n;
    }
    first.ok_or_else(|| RunError::Torch("an attention without queries".into()))
}

/// `rows` vectors of `inner` through `apply`, which writes `outputs` per row into the room it is
/// given (or makes its own), in chunks of rows that fit the arena; returns the sum of the first
/// output row, which depends on every element of the weight.
fn by_rows(
    inputs: &mut Inputs,
    rows: i64,
    inner: i64,
    outputs: i64,
    kind: Kind,
    apply: impl Fn(&Tensor, Option<&Tensor>) -> Result<Tensor, RunError>,
) -> Result<Tensor, RunError> {
    let chunk = inputs.rows_at_once(inner, outputs, kind).min(rows.max(1));
    let mut first = None;
    let mut at = 0;
    while at < rows.max(1) {
        let n = chunk.min(rows.max(1) - at);
        let x = inputs.get(&[n, inner], kind)?;
        let room = inputs.output(&[n, outputs], kind)?;
        let out = apply(&x, room.as_ref())?;
        if first.is_none() {
            first = Some(first_row(&out)?);
        }
        at += n;
    }
    first.ok_or_else(|| RunError::Torch("a product without rows".into()))
}

/// `x · b`, written into `room` where there is one.
pub(super) fn product(x: &Tensor, b: &Tensor, room: Option<&Tensor>) -> Result<Tensor, RunError> {
    note_product(x, b);
    Ok(match room {
        Some(room) => x.f_matmul_out(room, b)?,
        None => x.f_matmul(b)?,
    })
}

/// A product's device (-1: the CPU, else the GPU's ordinal), dtype ([`kind_code`]), rows, inner
/// width and outputs.
type ProductShape = (i64, i64, i64, i64, i64);

/// The distinct products computed since [`forget_products`]: libtorch's math library keeps
/// kernels for each, and the plan counts them (`distinct_products`); a run reports how many it
/// computed, so that the two can be compared.
static PRODUCTS: Mutex<BTreeSet<ProductShape>> = Mutex::new(BTreeSet::new());

fn note_product(x: &Tensor, b: &Tensor) {
    let (size, outputs) = (x.size(), b.size().last().copied().unwrap_or(0));
    let (rows, inner) = match size.as_slice() {
        [rows, inner] => (*rows, *inner),
        _ => (size.iter().rev().skip(1).product(), size.last().copied().unwrap_or(0)),
    };
    if let Ok(mut seen) = PRODUCTS.lock() {
        seen.insert((ordinal(x.device()), kind_code(x.kind()), rows, inner, outputs));
    }
}

/// A number for each dtype a product computes in.
fn kind_code(kind: Kind) -> i64 {
    match kind {
        Kind::Double => 0,
        Kind::Float => 1,
        Kind::Half => 2,
        Kind::BFloat16 => 3,
        _ => 4,
    }
}

/// Forgets the products and norms computed so far: a run counts its own.
pub fn forget_products() {
    if let Ok(mut seen) = PRODUCTS.lock() {
        seen.clear();
    }
    if let Ok(mut norms) = NORMS.lock() {
        norms.clear();
    }
}

/// The distinct products computed on `device` since [`forget_products`].
pub fn distinct_products(device: Device) -> u64 {
    let ordinal = ordinal(device);
    PRODUCTS.lock().map_or(0, |seen| seen.iter().filter(|p| p.0 == ordinal).count() as u64)
}

/// A device as [`ProductShape`] keeps it: the GPU's ordinal, -1 for the CPU.
fn ordinal(device: Device) -> i64 {
    match device {
        Device::Cuda(n) => n as i64,
        _ => -1,
    }
}

/// The sum of an output's first row (the whole of a vector), on its device.
fn first_row(out: &Tensor) -> Result<Tensor, RunError> {
    let first = if out.dim() > 1 { out.f_select(0, 0)? } else { out.shallow_clone() };
    Ok(first.f_sum(Kind::Double)?)
}

/// The largest norm's input computed on each device since [`forget_products`], in bytes (the
/// device as [`ordinal`] numbers it): the allocator keeps a norm's temporaries, a multiple of
/// it, and the plan counts them (`largest_norm_bytes`); a run reports its own, to compare.
static NORMS: Mutex<BTreeMap<i64, u64>> = Mutex::new(BTreeMap::new());

/// The largest norm input computed on `device` since [`forget_products`], in bytes.
pub fn largest_norm(device: Device) -> u64 {
    NORMS.lock().map_or(0, |norms| norms.get(&ordinal(device)).copied().unwrap_or(0))
}

/// A layer norm of `x` by the weight `w`, into `out` where there is room.
pub(super) fn norm(x: &Tensor, out: Option<&Tensor>, w: &Tensor, n: i64) -> Result<Tensor, RunError> {
    if let Ok(mut norms) = NORMS.lock() {
        let bytes = super::streams::tensor_bytes(x);
        let largest = norms.entry(ordinal(x.device())).or_insert(0);
        *largest = (*largest).max(bytes);
    }
    if let Some(out) = out {
        // Mean and deviation per row, in the dtype the device's kernel keeps them in (a GPU
        // keeps 16-bit inputs' statistics in F32); where that guess is wrong, the plain norm.
        let stats = match (x.device(), x.kind()) {
            (Device::Cuda(_), Kind::BFloat16 | Kind::Half) => Kind::Float,
            (_, kind) => kind,
        };
        let mean = Tensor::f_empty([0], (stats, x.device()))?;
        let rstd = Tensor::f_empty([0], (stats, x.device()))?;
        if let Ok((y, _, _)) = x.f_native_layer_norm_out(out, &mean, &rstd, [n], Some(w), None::<&Tensor>, 1e-6) {
            return Ok(y);
        }
    }
    Ok(x.f_layer_norm([n], Some(w), None::<&Tensor>, 1e-6, false)?)
}

/// A running sum on the device, in order (the same order gives the same bits).
struct Sum(Option<Tensor>);

impl Sum {
    fn add(&mut self, part: Tensor) -> Result<(), RunError> {
        self.0 = Some(match self.0.take() {
            Some(total) => total.f_add(&part)?,
            None => part,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn weight(name: &str, shape: &[i64]) -> Weight {
        let n: i64 = shape.iter().product();
        let tensor = Tensor::f_arange(n, (Kind::Float, Device::Cpu))
            .unwrap()
            .remainder(7)
            .g_div_scalar(7.0)
            .f_to_kind(Kind::BFloat16)
            .unwrap()
            .f_reshape(shape)
            .unwrap();
        Weight { name: name.to_owned(), tensor, quantized: None }
    }

    /// A layer's checksum is the same in an arena large enough for everything, in one so small
    /// that every product goes through in chunks of rows, and without one.
    #[test]
    fn an_arena_and_its_chunks_compute_what_plain_tensors_do() {
        let weights = [
            weight("attn.qkv.weight", &[96, 32]),
            weight("attn.qkv.bias", &[96]),
            weight("norm.weight", &[32]),
            weight("mod.lin.weight", &[64, 32]),
            weight("patch.weight", &[8, 4, 1, 2, 2]),
        ];
        let work =
            Work { rows: vec![Some(100), Some(100), Some(100), Some(1), Some(49)], attention: vec![(100, 80, 32)] };
        let checksum = |arena: u64| {
            let mut inputs = Inputs::new(100, Device::Cpu, arena).unwrap();
            layer(&weights, &work, &mut inputs).unwrap()
        };
        let plain = checksum(0);
        assert!(plain.is_finite() && plain != 0.0);
        assert_eq!(checksum(3 * 100 * 96 * 2 * 2).to_bits(), plain.to_bits(), "the whole layer at once");
        assert_eq!(checksum(3 * 1024).to_bits(), plain.to_bits(), "in chunks of a few rows");
    }

    /// The inputs' pattern reads the same through the arena as through a buffer of its own, and
    /// as the probe's products read it ([`pattern`]): varied values, not one repeated.
    #[test]
    fn the_inputs_pattern_does_not_depend_on_where_it_is_written() {
        let mut arena = Inputs::new(1, Device::Cpu, 3 * 4096).unwrap();
        let mut plain = Inputs::new(1, Device::Cpu, 0).unwrap();
        for shape in [[3i64, 5], [40, 25], [1, 600]] {
            let a = arena.get(&shape, Kind::BFloat16).unwrap();
            let b = plain.get(&shape, Kind::BFloat16).unwrap();
            assert!(a.equal(&b), "{shape:?}");
            let probe = pattern(&shape, Kind::BFloat16, Device::Cpu).unwrap();
            assert!(probe.equal(&a), "{shape:?}");
        }
        let values = pattern(&[1, 600], Kind::Float, Device::Cpu).unwrap().f_unique_dim(1, false, false, false);
        assert!(values.unwrap().0.numel() > 200, "the pattern's 251 values");
    }
}
