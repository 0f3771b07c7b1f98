//! Inference-only CPU kernels that fuse steps of the BERT forward pass which candle runs as
//! separate passes over memory: the bias addition of a linear layer (and the GELU after it),
//! and masked attention. They have no backward pass, so training uses candle's own operations.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::gelu::gelu_slice;

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, name: &str) -> Result<&'a [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{name} expects contiguous input");
    };
    Ok(&storage.as_slice::<f32>()?[start..end])
}

fn gemm_threads() -> Parallelism {
    Parallelism::Rayon(rayon::current_num_threads())
}

/// `x · wᵀ + b` for `x` of shape `[.., in]`, optionally followed by the exact GELU.
struct LinearBias {
    gelu: bool,
}

impl CustomOp3 for LinearBias {
    fn name(&self) -> &'static str {
        if self.gelu {
            "linear-bias-gelu"
        } else {
            "linear-bias"
        }
    }

    fn cpu_fwd(
        &self,
        x_storage: &CpuStorage,
        x_layout: &Layout,
        w_storage: &CpuStorage,
        w_layout: &Layout,
        b_storage: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, bias) = (
            contiguous(x_storage, x_layout, "linear")?,
            contiguous(w_storage, w_layout, "linear")?,
            contiguous(b_storage, b_layout, "linear")?,
        );
        let (out_dim, in_dim) = w_layout.shape().dims2()?;
        let rows = x.len() / in_dim;

        // The output starts as the bias in every row, and the product is added to it.
        let mut out: Vec<f32> = Vec::with_capacity(rows * out_dim);
        for _ in 0..rows {
            out.extend_from_slice(bias);
        }
        // SAFETY: every pointer covers the matrix its dimensions and strides describe: `x` is
        // rows × in_dim row-major, `w` is out_dim × in_dim row-major (read transposed), and `out`
        // is rows × out_dim row-major.
        unsafe {
            gemm::gemm(
                rows,
                out_dim,
                in_dim,
                out.as_mut_ptr(),
                1,
                out_dim as isize,
                true,
                x.as_ptr(),
                1,
                in_dim as isize,
                w.as_ptr(),
                in_dim as isize,
                1,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm_threads(),
            );
        }
        if self.gelu {
            gelu_slice(&mut out);
        }

        let mut dims = x_layout.shape().dims().to_vec();
        *dims.last_mut().expect("x has a last dimension") = out_dim;
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

/// Returns `x · weightᵀ + bias`, with the exact GELU applied when `gelu` is set.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor, gelu: bool) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3_no_bwd(&weight.contiguous()?, &bias.contiguous()?, &LinearBias { gelu })
}

/// Masked softmax attention for right-padded sequences of the given lengths, reading queries,
/// keys and values from the output of the stacked projection, `[batch, seq, 3 · heads · head]`.
/// Returns `[batch, seq, heads · head]`; rows at padded positions are zero.
struct PaddedAttention {
    lengths: Vec<usize>,
    heads: usize,
    scale: f32,
}

/// A raw output pointer shared by tasks that write disjoint rows.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint (batch, head) blocks of the buffer, which outlives them.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl CustomOp1 for PaddedAttention {
    fn name(&self) -> &'static str {
        "padded-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = contiguous(storage, layout, "attention")?;
        let (batch, seq_len, stacked) = layout.shape().dims3()?;
        if self.lengths.len() != batch || self.lengths.iter().any(|&n| n == 0 || n > seq_len) {
            candle_core::bail!(
                "attention lengths {:?} do not fit a batch of {batch} × {seq_len}",
                self.lengths
            );
        }
        let (heads, hidden) = (self.heads, stacked / 3);
        let head_size = hidden / heads;
        let mut out = vec![0f32; batch * seq_len * hidden];
        let shared = SharedOut(out.as_mut_ptr());
        // Row i of sequence b starts at (b · seq + i) · stacked: queries, then keys, then values.
        let offset =
            |which: usize, b: usize, h: usize| b * seq_len * stacked + which * hidden + h * head_size;
        let row_stride = stacked as isize;

        (0..batch * heads).into_par_iter().for_each(|task| {
            let (b, h) = (task / heads, task % heads);
            let n = self.lengths[b];
            let (q, k, v) = (
                &qkv[offset(0, b, h)..],
                &qkv[offset(1, b, h)..],
                &qkv[offset(2, b, h)..],
            );
            let mut scores = vec![0f32; n * n];
            let out = shared;
            // SAFETY: q, k and v each start n rows of head_size floats inside `qkv`, with rows
            // `stacked` apart. `scores` is n × n. The output block starts at row 0 of sequence b,
            // column h · head_size, with rows `hidden` apart, and no other task writes it.
            unsafe {
                gemm::gemm(
                    n,
                    n,
                    head_size,
                    scores.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    q.as_ptr(),
                    1,
                    row_stride,
                    k.as_ptr(),
                    row_stride,
                    1,
                    0.0,
                    self.scale,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
                softmax_rows(&mut scores, n);
                gemm::gemm(
                    n,
                    head_size,
                    n,
                    out.0.add(b * seq_len * hidden + h * head_size),
                    1,
                    hidden as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    n as isize,
                    v.as_ptr(),
                    1,
                    row_stride,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((batch, seq_len, hidden))))
    }
}

fn softmax_rows(scores: &mut [f32], width: usize) {
    for row in scores.chunks_mut(width) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for value in row.iter_mut() {
            *value = (*value - max).exp();
            sum += *value;
        }
        let inverse = 1.0 / sum;
        row.iter_mut().for_each(|value| *value *= inverse);
    }
}

/// Returns scaled dot-product attention for right-padded sequences with `lengths` real tokens,
/// from the stacked projection `qkv` (`[batch, seq, 3 · heads · head]`, queries first), as
/// `[batch, seq, heads · head]`.
pub fn padded_attention(qkv: &Tensor, lengths: Vec<usize>, heads: usize, scale: f32) -> Result<Tensor> {
    qkv.contiguous()?.apply_op1_no_bwd(&PaddedAttention {
        lengths,
        heads,
        scale,
    })
}

/// Returns the number of real tokens per row when `attention_mask` (`[batch, seq]`, 0 or 1) is
/// right-padded, and `None` otherwise.
pub fn right_padded_lengths(attention_mask: &Tensor) -> Result<Option<Vec<usize>>> {
    let rows: Vec<Vec<u32>> = attention_mask.to_dtype(candle_core::DType::U32)?.to_vec2()?;
    let mut lengths = Vec::with_capacity(rows.len());
    for row in rows {
        let length = row.iter().take_while(|&&m| m == 1).count();
        if length == 0 || row[length..].iter().any(|&m| m != 0) {
            return Ok(None);
        }
        lengths.push(length);
    }
    Ok(Some(lengths))
}
