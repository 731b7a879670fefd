//! GGUF quantized weights: kept quantized in memory and on the wire, dequantized on the compute
//! device with torch ops when a layer runs. Block layouts as ggml defines them.

use tch::{Kind, Tensor};

use super::error::RunError;

/// The ggml types this runtime dequantizes; plain types (F32, F16, BF16) need none.
pub const QUANTIZED: [&str; 3] = ["Q8_0", "Q4_K", "Q6_K"];

/// Bytes and weights of one block of each ggml type this runtime dequantizes.
const Q8_0: (i64, i64) = (34, 32);
const Q4_K: (i64, i64) = (144, 256);
const Q6_K: (i64, i64) = (210, 256);

/// Bytes and weights of one block of a ggml type this runtime dequantizes.
pub fn block(dtype: &str) -> Option<(i64, i64)> {
    match dtype {
        "Q8_0" => Some(Q8_0),
        "Q4_K" => Some(Q4_K),
        "Q6_K" => Some(Q6_K),
        _ => None,
    }
}

/// Whether a plan dtype is a ggml block type that this runtime can dequantize.
pub fn is_quantized(dtype: &str) -> bool {
    QUANTIZED.contains(&dtype)
}

/// Half-precision scales stored in two bytes of each block, as f32, one per block.
fn half_column(blocks: &Tensor, at: i64) -> Result<Tensor, RunError> {
    Ok(blocks.f_narrow(1, at, 2)?.f_contiguous()?.f_view_dtype(Kind::Half)?.f_to_kind(Kind::Float)?)
}

/// Bytes `at..at + len` of each block, as int32 values 0..=255.
fn bytes(blocks: &Tensor, at: i64, len: i64) -> Result<Tensor, RunError> {
    Ok(blocks.f_narrow(1, at, len)?.f_to_kind(Kind::Int)?)
}

fn div(x: &Tensor, by: i64) -> Result<Tensor, RunError> {
    Ok(x.f_floor_divide_scalar(by)?)
}

fn rem(x: &Tensor, by: i64) -> Result<Tensor, RunError> {
    Ok(x.f_remainder(by)?)
}

/// Dequantizes `raw` (the tensor's bytes, on the compute device) of ggml type `dtype` into a
/// BF16 tensor of `shape`, the dtype the layer then computes in.
pub fn dequantize(raw: &Tensor, dtype: &str, shape: &[i64]) -> Result<Tensor, RunError> {
    Ok(dequantize_f32(raw, dtype, shape)?.f_to_kind(Kind::BFloat16)?)
}

/// Dequantizes into F32 values of `shape`.
pub fn dequantize_f32(raw: &Tensor, dtype: &str, shape: &[i64]) -> Result<Tensor, RunError> {
    let values = match dtype {
        // 32 weights: an f16 scale, then 32 int8.
        "Q8_0" => {
            let blocks = raw.f_reshape([-1, Q8_0.0])?;
            let d = half_column(&blocks, 0)?;
            let q = blocks.f_narrow(1, 2, 32)?.f_contiguous()?.f_view_dtype(Kind::Int8)?.f_to_kind(Kind::Float)?;
            d.f_mul(&q)?
        }
        // 256 weights: f16 scale and min, 12 bytes of 6-bit sub-block scales and mins, 128 bytes
        // of 4-bit values (low nibbles then high nibbles of each 32-byte run).
        "Q4_K" => {
            let blocks = raw.f_reshape([-1, Q4_K.0])?;
            let n = blocks.size().first().copied().unwrap_or(0);
            let d = half_column(&blocks, 0)?;
            let dmin = half_column(&blocks, 2)?;
            let lo = bytes(&blocks, 4, 4)?;
            let mid = bytes(&blocks, 8, 4)?;
            let hi = bytes(&blocks, 12, 4)?;
            let scale = Tensor::f_cat(&[rem(&lo, 64)?, rem(&hi, 16)?.f_add(&div(&lo, 64)?.f_mul_scalar(16)?)?], 1)?;
            let min = Tensor::f_cat(&[rem(&mid, 64)?, div(&hi, 16)?.f_add(&div(&mid, 64)?.f_mul_scalar(16)?)?], 1)?;
            let q = bytes(&blocks, 16, 128)?.f_reshape([n, 4, 1, 32])?;
            let q = Tensor::f_cat(&[rem(&q, 16)?, div(&q, 16)?], 2)?.f_reshape([n, 8, 32])?.f_to_kind(Kind::Float)?;
            let scale = scale.f_to_kind(Kind::Float)?.f_mul(&d)?.f_unsqueeze(2)?;
            let min = min.f_to_kind(Kind::Float)?.f_mul(&dmin)?.f_unsqueeze(2)?;
            q.f_mul(&scale)?.f_sub(&min)?
        }
        // 256 weights: 128 bytes of low 4 bits, 64 bytes of high 2 bits, 16 int8 scales, an f16
        // scale; in two halves of 128.
        "Q6_K" => {
            let blocks = raw.f_reshape([-1, Q6_K.0])?;
            let n = blocks.size().first().copied().unwrap_or(0);
            let d = half_column(&blocks, 208)?;
            let scales =
                blocks.f_narrow(1, 192, 16)?.f_contiguous()?.f_view_dtype(Kind::Int8)?.f_to_kind(Kind::Float)?;
            let mut halves = Vec::new();
            for h in 0..2 {
                let a = bytes(&blocks, 64 * h, 32)?;
                let b = bytes(&blocks, 64 * h + 32, 32)?;
                let qh = bytes(&blocks, 128 + 32 * h, 32)?;
                let high =
                    |shift: i64| -> Result<Tensor, RunError> { Ok(rem(&div(&qh, 1 << shift)?, 4)?.f_mul_scalar(16)?) };
                let q = Tensor::f_stack(
                    &[
                        rem(&a, 16)?.f_add(&high(0)?)?,
                        rem(&b, 16)?.f_add(&high(2)?)?,
                        div(&a, 16)?.f_add(&high(4)?)?,
                        div(&b, 16)?.f_add(&high(6)?)?,
                    ],
                    1,
                )?
                .f_sub_scalar(32)?
                .f_to_kind(Kind::Float)?
                .f_reshape([n, 4, 2, 16])?;
                let sc = scales.f_narrow(1, 8 * h, 8)?.f_reshape([n, 4, 2, 1])?;
                halves.push(q.f_mul(&sc)?.f_reshape([n, 128])?);
            }
            Tensor::f_cat(&halves, 1)?.f_mul(&d)?
        }
        other => {
            return Err(RunError::Unsupported {
                what: format!("dequantizing ggml type `{other}` (this runtime does {})", QUANTIZED.join(", ")),
            });
        }
    };
    Ok(values.f_reshape(shape)?)
}
