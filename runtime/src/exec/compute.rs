//! The arithmetic of one layer: its real weights applied at the plan's token count.

use tch::{Device, Kind, Tensor};

use super::error::RunError;
use super::load::Weight;

/// Deterministic hidden states of every shape a model's layers ask for: views of one buffer per
/// dtype, as large as the largest shape asked for, so that the inputs of a run cost what one
/// layer's input does (as a model's activations do), not one buffer per width. An element's value
/// depends only on its index, so a shape reads the same values whatever was asked before.
pub struct Inputs {
    tokens: i64,
    device: Device,
    buffers: Vec<(Kind, Tensor)>,
}

impl Inputs {
    pub fn new(tokens: u64, device: Device) -> Self {
        Self { tokens: i64::try_from(tokens).unwrap_or(1).max(1), device, buffers: Vec::new() }
    }

    fn get(&mut self, shape: &[i64], kind: Kind) -> Result<Tensor, RunError> {
        let n: i64 = shape.iter().product();
        let slot = self.buffers.iter().position(|(k, t)| *k == kind && t.numel() >= usize::try_from(n).unwrap_or(0));
        let buffer = match slot {
            Some(i) => self.buffers.get(i).map(|(_, t)| t.shallow_clone()),
            None => None,
        };
        let buffer = match buffer {
            Some(buffer) => buffer,
            None => {
                // 251 values, repeated: no temporary larger than the buffer itself.
                let pattern = Tensor::f_arange(251, (Kind::Float, self.device))?.g_div_scalar(251.0).g_sub_scalar(0.5);
                let x = pattern.f_to_kind(kind)?.f_repeat([(n + 250) / 251])?;
                self.buffers.retain(|(k, _)| *k != kind);
                self.buffers.push((kind, x.shallow_clone()));
                x
            }
        };
        Ok(buffer.f_narrow(0, 0, n)?.f_reshape(shape)?)
    }

    /// The side of the square images convolutions see: as many pixels as tokens.
    fn side(&self, at_least: i64) -> i64 {
        ((self.tokens as f64).sqrt().round() as i64).max(at_least).max(1)
    }
}

fn is_float(kind: Kind) -> bool {
    matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 | Kind::Float8e4m3fn | Kind::Float8e5m2)
}

/// Applies a layer's weights; returns a checksum of everything it computed. The checksum is summed
/// on the compute device and read once per layer: one wait for the device per layer, not per
/// weight.
pub fn layer(weights: &[Weight], inputs: &mut Inputs) -> Result<f64, RunError> {
    let mut sum = Sum(None);
    for w in weights {
        let name = &w.name;
        let dequantized = match &w.quantized {
            Some((dtype, shape)) => Some(super::gguf::dequantize(&w.tensor, dtype, shape)?),
            None => None,
        };
        let weight = dequantized.as_ref().unwrap_or(&w.tensor);
        let kind = weight.kind();
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
        if mgc_plan::is_lookup(name) && size.len() == 2 {
            // An embedding: one row gathered per token, as the model does.
            let rows = size.first().copied().unwrap_or(1).max(1);
            let index = Tensor::f_arange(inputs.tokens, (Kind::Int64, w.device()))?.remainder(rows);
            sum.add(w.f_index_select(0, &index)?.f_sum(Kind::Double)?)?;
            continue;
        }
        let out = match size.as_slice() {
            [_, inner] => inputs.get(&[inputs.tokens, *inner], kind)?.f_matmul(&w.f_transpose(0, 1)?)?,
            [n] if name.ends_with("bias") => inputs.get(&[inputs.tokens, *n], kind)?.f_add(&w)?,
            [n] => {
                inputs.get(&[inputs.tokens, *n], kind)?.f_layer_norm([*n], Some(&w), None::<&Tensor>, 1e-6, false)?
            }
            [_, channels, kh, kw] => {
                let side = inputs.side((*kh).max(*kw));
                let x = inputs.get(&[1, *channels, side, side], kind)?;
                x.f_conv2d(&w, None::<&Tensor>, [1, 1], [*kh / 2, *kw / 2], [1, 1], 1)?
            }
            [_, channels, kd, kh, kw] => {
                let side = inputs.side((*kh).max(*kw)) / 2;
                let x = inputs.get(&[1, *channels, (*kd).max(1), side.max(*kh), side.max(*kw)], kind)?;
                x.f_conv3d(&w, None::<&Tensor>, [1, 1, 1], [0, *kh / 2, *kw / 2], [1, 1, 1], 1)?
            }
            _ => w.shallow_clone(),
        };
        // The first row of the output depends on every weight of the tensor: its sum tells plans
        // apart bit for bit without a second pass over the whole output.
        let first = if out.dim() > 1 { out.f_select(0, 0)? } else { out };
        sum.add(first.f_sum(Kind::Double)?)?;
    }
    Ok(sum.0.map_or(0.0, |t| t.double_value(&[])))
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
