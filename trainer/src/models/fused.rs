//! CPU kernels that fuse steps of the BERT forward pass which candle runs as separate passes
//! over memory: the bias addition of a linear layer (and, in inference, the GELU after it), and
//! masked attention for inference. The linear layer without GELU has a backward pass, so
//! training uses it too.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rand::RngCore;
use gemm::Parallelism;
use rayon::prelude::*;

use super::gelu::gelu_slice;
use super::grad_ops::{drop_threshold, mask_rng};

/// Returns the f32 values of a contiguous tensor's storage; `name` goes into the error.
pub(super) fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, name: &str) -> Result<&'a [f32]> {
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

    /// With y = x · wᵀ + b over rows of x: dx = dy · w, dw = dyᵀ · x, db = Σ dy over rows.
    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _result: &Tensor,
        grad_result: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if self.gelu {
            candle_core::bail!("the fused linear layer with GELU has no backward pass");
        }
        let (out_dim, in_dim) = weight.dims2()?;
        let x_rows = x.reshape(((), in_dim))?;
        let grad_rows = grad_result.contiguous()?.reshape(((), out_dim))?;

        let grad_x = grad_rows.matmul(weight)?.reshape(x.shape())?;
        let grad_weight = grad_rows.t()?.matmul(&x_rows)?;
        // Σ over rows as a product with a row of ones: gemm runs it in parallel, candle's
        // reduction over the first dimension does not.
        let ones = Tensor::ones((1, grad_rows.dim(0)?), grad_rows.dtype(), grad_rows.device())?;
        let grad_bias = ones.matmul(&grad_rows)?.squeeze(0)?;
        Ok((Some(grad_x), Some(grad_weight), Some(grad_bias)))
    }
}

/// Returns `x · weightᵀ + bias`, with the exact GELU applied when `gelu` is set. Differentiable
/// without `gelu`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor, gelu: bool) -> Result<Tensor> {
    let (x, weight, bias) = (x.contiguous()?, weight.contiguous()?, bias.contiguous()?);
    if gelu {
        return x.apply_op3_no_bwd(&weight, &bias, &LinearBias { gelu });
    }
    x.apply_op3(&weight, &bias, LinearBias { gelu })
}

/// Masked softmax attention for right-padded sequences of the given lengths, reading queries,
/// keys and values from the output of the stacked projection, `[batch, seq, 3 · heads · head]`.
/// Returns `[batch, seq, heads · head]`; rows at padded positions are zero.
///
/// In training, dropout on the attention probabilities draws its mask from `dropout`'s seed and
/// the (sequence, head) pair. The backward pass recomputes the probabilities and the mask, so the
/// `[batch, heads, seq, seq]` tensors that candle would keep for it are never stored.
#[derive(Clone)]
struct PaddedAttention {
    lengths: Vec<usize>,
    heads: usize,
    scale: f32,
    dropout: Option<AttentionDropout>,
}

/// Dropout on attention probabilities: probability `p`, masks derived from `seed`.
#[derive(Clone, Copy)]
pub struct AttentionDropout {
    pub p: f32,
    pub seed: u64,
}

impl AttentionDropout {
    /// Returns the keep mask of one (sequence, head) task, n × n, as 0 or 1 / (1 − p).
    fn mask(&self, task: usize, n: usize) -> Vec<f32> {
        let mut rng = mask_rng(self.seed, task as u64 + 1);
        let threshold = drop_threshold(self.p);
        let keep_scale = 1.0 / (1.0 - self.p);
        (0..n * n)
            .map(|_| if rng.next_u32() >= threshold { keep_scale } else { 0.0 })
            .collect()
    }
}

/// A raw output pointer shared by tasks that write disjoint rows.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint (batch, head) blocks of the buffer, which outlives them.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// Parts of the stacked projection, in the order of its columns.
const QUERIES: usize = 0;
const KEYS: usize = 1;
const VALUES: usize = 2;

/// Offsets of one (sequence, head) task's blocks in the stacked `[batch, seq, 3 · hidden]`
/// projection and in the `[batch, seq, hidden]` context.
struct HeadBlock {
    seq_len: usize,
    hidden: usize,
    head_size: usize,
}

impl HeadBlock {
    fn stacked(&self) -> usize {
        3 * self.hidden
    }

    /// Returns the offset of the first row of `part` (`QUERIES`, `KEYS` or `VALUES`) of sequence
    /// b, head h.
    fn projection(&self, part: usize, b: usize, h: usize) -> usize {
        b * self.seq_len * self.stacked() + part * self.hidden + h * self.head_size
    }

    /// Returns the offset of the first context row of sequence b, head h.
    fn context(&self, b: usize, h: usize) -> usize {
        b * self.seq_len * self.hidden + h * self.head_size
    }
}

/// `dst = beta · lhs · rhs` for row-major blocks given by (pointer, column stride, row stride).
///
/// # Safety
/// Each pointer must address an m × k (lhs), k × n (rhs) or m × n (dst) matrix with the given
/// strides, and dst must not overlap the inputs.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: (*mut f32, isize, isize),
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
    beta: f32,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst.0,
        dst.1,
        dst.2,
        false,
        lhs.0,
        lhs.1,
        lhs.2,
        rhs.0,
        rhs.1,
        rhs.2,
        0.0,
        beta,
        false,
        false,
        false,
        Parallelism::None,
    );
}

impl PaddedAttention {
    fn check(&self, layout: &Layout) -> Result<HeadBlock> {
        let (batch, seq_len, stacked) = layout.shape().dims3()?;
        if self.lengths.len() != batch || self.lengths.iter().any(|&n| n == 0 || n > seq_len) {
            candle_core::bail!(
                "attention lengths {:?} do not fit a batch of {batch} × {seq_len}",
                self.lengths
            );
        }
        let hidden = stacked / 3;
        Ok(HeadBlock {
            seq_len,
            hidden,
            head_size: hidden / self.heads,
        })
    }

    /// Returns the attention probabilities of one task, n × n, before dropout.
    fn probabilities(&self, qkv: &[f32], block: &HeadBlock, task: usize) -> Vec<f32> {
        let (b, h) = (task / self.heads, task % self.heads);
        let n = self.lengths[b];
        let row_stride = block.stacked() as isize;
        let q = &qkv[block.projection(QUERIES, b, h)..];
        let k = &qkv[block.projection(KEYS, b, h)..];
        let mut probs = vec![0f32; n * n];
        // SAFETY: q and k start n rows of head_size floats inside `qkv`, rows `stacked` apart,
        // and kᵀ is read with swapped strides. `probs` is n × n.
        unsafe {
            matmul(
                (n, n, block.head_size),
                (probs.as_mut_ptr(), 1, n as isize),
                (q.as_ptr(), 1, row_stride),
                (k.as_ptr(), row_stride, 1),
                self.scale,
            );
        }
        softmax_rows(&mut probs, n);
        probs
    }

    /// Returns the probabilities after dropout, and the dropout mask when there is one.
    fn dropped_probabilities(&self, qkv: &[f32], block: &HeadBlock, task: usize) -> (Vec<f32>, Option<Vec<f32>>) {
        let mut probs = self.probabilities(qkv, block, task);
        let n = self.lengths[task / self.heads];
        let mask = self.dropout.map(|dropout| dropout.mask(task, n));
        if let Some(mask) = &mask {
            probs.iter_mut().zip(mask).for_each(|(p, m)| *p *= m);
        }
        (probs, mask)
    }
}

impl CustomOp1 for PaddedAttention {
    fn name(&self) -> &'static str {
        "padded-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = contiguous(storage, layout, "attention")?;
        let block = self.check(layout)?;
        let batch = self.lengths.len();
        let mut out = vec![0f32; batch * block.seq_len * block.hidden];
        let shared = SharedOut(out.as_mut_ptr());

        (0..batch * self.heads).into_par_iter().for_each(|task| {
            let (b, h) = (task / self.heads, task % self.heads);
            let n = self.lengths[b];
            let (probs, _) = self.dropped_probabilities(qkv, &block, task);
            let v = &qkv[block.projection(VALUES, b, h)..];
            let out = shared;
            // SAFETY: v starts n rows of head_size floats, rows `stacked` apart. The output block
            // starts at row 0 of sequence b, column h · head_size, with rows `hidden` apart, and
            // no other task writes it.
            unsafe {
                matmul(
                    (n, block.head_size, n),
                    (out.0.add(block.context(b, h)), 1, block.hidden as isize),
                    (probs.as_ptr(), 1, n as isize),
                    (v.as_ptr(), 1, block.stacked() as isize),
                    1.0,
                );
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((batch, block.seq_len, block.hidden))))
    }

    fn bwd(&self, qkv: &Tensor, _result: &Tensor, grad_result: &Tensor) -> Result<Option<Tensor>> {
        let grad = qkv.apply_op2_no_bwd(&grad_result.contiguous()?, &PaddedAttentionGrad(self.clone()))?;
        Ok(Some(grad))
    }
}

/// The backward pass of [`PaddedAttention`]: from the stacked projection and the context's
/// gradient, the gradient of the stacked projection. With P̃ the probabilities after dropout
/// (mask M): dV = P̃ᵀ·dO, dP = (dO·Vᵀ) ⊙ M, dS = P ⊙ (dP − Σ dP ⊙ P), dQ = s·dS·K, dK = s·dSᵀ·Q.
struct PaddedAttentionGrad(PaddedAttention);

impl CustomOp2 for PaddedAttentionGrad {
    fn name(&self) -> &'static str {
        "padded-attention-backward"
    }

    fn cpu_fwd(
        &self,
        qkv_storage: &CpuStorage,
        qkv_layout: &Layout,
        grad_storage: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let attention = &self.0;
        let qkv = contiguous(qkv_storage, qkv_layout, "attention backward")?;
        let grad_out = contiguous(grad_storage, grad_layout, "attention backward")?;
        let block = attention.check(qkv_layout)?;
        let mut grad_qkv = vec![0f32; qkv.len()];
        let shared = SharedOut(grad_qkv.as_mut_ptr());

        (0..attention.lengths.len() * attention.heads)
            .into_par_iter()
            .for_each(|task| attention.backward_task(qkv, grad_out, &block, task, shared));
        Ok((CpuStorage::F32(grad_qkv), qkv_layout.shape().clone()))
    }
}

impl PaddedAttention {
    /// Writes the query, key and value gradients of one (sequence, head) task into `grad_qkv`.
    fn backward_task(&self, qkv: &[f32], grad_out: &[f32], block: &HeadBlock, task: usize, grad_qkv: SharedOut) {
        let (b, h) = (task / self.heads, task % self.heads);
        let n = self.lengths[b];
        let probs = self.probabilities(qkv, block, task);
        let mask = self.dropout.map(|dropout| dropout.mask(task, n));
        let dropped: Option<Vec<f32>> = mask
            .as_ref()
            .map(|mask| probs.iter().zip(mask).map(|(p, m)| p * m).collect());
        let dropped = dropped.as_deref().unwrap_or(&probs);
        let (stacked, hidden, d) = (block.stacked() as isize, block.hidden as isize, block.head_size);
        let (q, k, v) = (
            qkv[block.projection(QUERIES, b, h)..].as_ptr(),
            qkv[block.projection(KEYS, b, h)..].as_ptr(),
            qkv[block.projection(VALUES, b, h)..].as_ptr(),
        );
        let d_out = grad_out[block.context(b, h)..].as_ptr();
        let mut d_probs = vec![0f32; n * n];
        // SAFETY: every block below lies inside `qkv`, `grad_out`, the task's own n × n buffers
        // or the task's own (sequence, head) block of `grad_qkv`, with the strides given.
        unsafe {
            let grad_at = |part: usize| grad_qkv.0.add(block.projection(part, b, h));
            // dV = P̃ᵀ · dO.
            matmul((n, d, n), (grad_at(VALUES), 1, stacked), (dropped.as_ptr(), n as isize, 1), (d_out, 1, hidden), 1.0);
            // dP̃ = dO · Vᵀ.
            matmul((n, n, d), (d_probs.as_mut_ptr(), 1, n as isize), (d_out, 1, hidden), (v, stacked, 1), 1.0);
        }

        // Through dropout (dP = dP̃ ⊙ M), then the softmax's backward pass row by row.
        if let Some(mask) = &mask {
            d_probs.iter_mut().zip(mask).for_each(|(g, m)| *g *= m);
        }
        for (g_row, p_row) in d_probs.chunks_mut(n).zip(probs.chunks(n)) {
            let dot: f32 = g_row.iter().zip(p_row).map(|(g, p)| g * p).sum();
            g_row.iter_mut().zip(p_row).for_each(|(g, p)| *g = p * (*g - dot));
        }

        // SAFETY: as above. d_probs now contains dS, n × n.
        unsafe {
            let grad_at = |part: usize| grad_qkv.0.add(block.projection(part, b, h));
            // dQ = s · dS · K and dK = s · dSᵀ · Q.
            matmul((n, d, n), (grad_at(QUERIES), 1, stacked), (d_probs.as_ptr(), 1, n as isize), (k, 1, stacked), self.scale);
            matmul((n, d, n), (grad_at(KEYS), 1, stacked), (d_probs.as_ptr(), n as isize, 1), (q, 1, stacked), self.scale);
        }
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
/// `[batch, seq, heads · head]`, for inference (not differentiable).
pub fn padded_attention(qkv: &Tensor, lengths: Vec<usize>, heads: usize, scale: f32) -> Result<Tensor> {
    qkv.contiguous()?.apply_op1_no_bwd(&PaddedAttention {
        lengths,
        heads,
        scale,
        dropout: None,
    })
}

/// [`padded_attention`] for training: differentiable, with dropout on the probabilities.
pub fn padded_attention_train(
    qkv: &Tensor,
    lengths: Vec<usize>,
    heads: usize,
    scale: f32,
    dropout: Option<AttentionDropout>,
) -> Result<Tensor> {
    qkv.contiguous()?.apply_op1(PaddedAttention {
        lengths,
        heads,
        scale,
        dropout,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::testing::max_difference;
    use candle_core::{Device, Module, Var};

    /// candle's composed attention over `[batch, seq, 3 · hidden]`, with padded key columns
    /// masked and padded query rows zeroed, as the fused kernel returns them.
    fn reference_attention(qkv: &Tensor, lengths: &[usize], heads: usize, scale: f64) -> Tensor {
        let (batch, seq_len, stacked) = qkv.dims3().unwrap();
        let head_size = stacked / 3 / heads;
        let split = qkv
            .reshape((batch, seq_len, 3, heads, head_size))
            .unwrap()
            .permute((2, 0, 3, 1, 4))
            .unwrap()
            .contiguous()
            .unwrap();
        let (q, k, v) = (split.get(0).unwrap(), split.get(1).unwrap(), split.get(2).unwrap());
        let real: Vec<f32> = lengths
            .iter()
            .flat_map(|&n| (0..seq_len).map(move |i| if i < n { 1.0 } else { 0.0 }))
            .collect();
        let real = Tensor::from_vec(real, (batch, seq_len), qkv.device()).unwrap();
        let bias = ((real.clone() - 1.0).unwrap() * 1e9).unwrap().reshape((batch, 1, 1, seq_len)).unwrap();

        let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap().broadcast_add(&bias).unwrap();
        let probs = candle_nn::ops::softmax(&scores, candle_core::D::Minus1).unwrap();
        let context = probs.matmul(&v).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
        let context = context.reshape((batch, seq_len, heads * head_size)).unwrap();
        context.broadcast_mul(&real.unsqueeze(2).unwrap()).unwrap()
    }

    #[test]
    fn attention_gradient_matches_candle() {
        let device = Device::Cpu;
        let (lengths, heads) = (vec![7, 4, 1], 2);
        let qkv = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 7, 3 * 8), &device).unwrap()).unwrap();
        let upstream = Tensor::randn(0f32, 1.0, (3, 7, 8), &device).unwrap();

        let ours = padded_attention_train(&qkv, lengths.clone(), heads, 0.5, None).unwrap();
        let theirs = reference_attention(&qkv, &lengths, heads, 0.5);
        assert!(max_difference(&ours, &theirs) < 1e-5);

        let grad_ours = (ours * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let grad_theirs = (theirs * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let difference = max_difference(grad_ours.get(&qkv).unwrap(), grad_theirs.get(&qkv).unwrap());
        assert!(difference < 1e-4, "gradients differ by {difference}");
    }

    #[test]
    fn attention_dropout_gradient_matches_finite_differences() {
        let device = Device::Cpu;
        let (lengths, heads) = (vec![6, 3], 2);
        let dropout = Some(AttentionDropout { p: 0.3, seed: 5 });
        let qkv = Tensor::randn(0f32, 1.0, (2, 6, 3 * 8), &device).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (2, 6, 8), &device).unwrap();
        let direction = Tensor::randn(0f32, 1.0, (2, 6, 3 * 8), &device).unwrap();
        let objective = |x: &Tensor| -> Tensor {
            let out = padded_attention_train(x, lengths.clone(), heads, 0.5, dropout).unwrap();
            (out * &weights).unwrap().sum_all().unwrap()
        };

        let var = Var::from_tensor(&qkv).unwrap();
        let grads = objective(var.as_tensor()).backward().unwrap();
        let analytic = (grads.get(&var).unwrap() * &direction)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();

        let eps = 1e-2;
        let step = (&direction * eps).unwrap();
        let plus = objective(&(&qkv + &step).unwrap()).to_scalar::<f32>().unwrap();
        let minus = objective(&(&qkv - &step).unwrap()).to_scalar::<f32>().unwrap();
        let numeric = (plus - minus) / (2.0 * eps as f32);
        assert!(
            (analytic - numeric).abs() < 1e-2 * analytic.abs().max(1.0),
            "analytic {analytic}, finite differences {numeric}"
        );

        let without = padded_attention_train(&qkv, lengths.clone(), heads, 0.5, None).unwrap();
        let with = padded_attention_train(&qkv, lengths.clone(), heads, 0.5, dropout).unwrap();
        assert!(max_difference(&with, &without) > 0.0, "dropout changes the output");
    }

    #[test]
    fn linear_gradients_match_candle() {
        let device = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 5, 16), &device).unwrap()).unwrap();
        let weight = Var::from_tensor(&Tensor::randn(0f32, 1.0, (8, 16), &device).unwrap()).unwrap();
        let bias = Var::from_tensor(&Tensor::randn(0f32, 1.0, 8, &device).unwrap()).unwrap();
        let upstream = Tensor::randn(0f32, 1.0, (3, 5, 8), &device).unwrap();

        let ours = linear(&x, &weight, &bias, false).unwrap();
        let theirs = candle_nn::Linear::new(weight.as_tensor().clone(), Some(bias.as_tensor().clone()))
            .forward(&x)
            .unwrap();
        assert!(max_difference(&ours, &theirs) < 1e-4);

        let grad_ours = (ours * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let grad_theirs = (theirs * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, var) in [("input", &x), ("weight", &weight), ("bias", &bias)] {
            let difference =
                max_difference(grad_ours.get(var).unwrap(), grad_theirs.get(var).unwrap());
            assert!(difference < 1e-4, "{name} gradients differ by {difference}");
        }
    }
}
