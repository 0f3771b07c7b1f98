//! CPU kernels with backward passes for the training path: softmax over the last dimension,
//! layer normalisation and seeded dropout.
//!
//! candle builds these from element-wise operations: softmax is five passes forward and more
//! backward, and layer normalisation about ten. It also keeps every intermediate tensor for the
//! backward pass. Here each is one parallel pass forward and one or two backward, and only the
//! input and the output are kept. Dropout keeps no mask at all, because the backward pass draws
//! it again from the same seed.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use rayon::prelude::*;

use super::fused::contiguous;

/// Elements per parallel task of the element-wise kernels; dropout masks depend on it.
const CHUNK: usize = 1 << 14;

fn last_dim(layout: &Layout) -> Result<usize> {
    match layout.shape().dims().last() {
        Some(&width) if width > 0 => Ok(width),
        _ => candle_core::bail!("expected a tensor with a non-empty last dimension"),
    }
}

/// Softmax over the last dimension.
struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-last-dim-grad"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = contiguous(storage, layout, "softmax")?;
        let width = last_dim(layout)?;
        let mut output = input.to_vec();
        output.par_chunks_mut(width).for_each(softmax_row);
        Ok((CpuStorage::F32(output), layout.shape().clone()))
    }

    /// With y = softmax(x): dx = y ⊙ (dy − Σ dy ⊙ y), the sum over each row.
    fn bwd(&self, _arg: &Tensor, result: &Tensor, grad_result: &Tensor) -> Result<Option<Tensor>> {
        let grad = result.apply_op2_no_bwd(&grad_result.contiguous()?, &SoftmaxGrad)?;
        Ok(Some(grad))
    }
}

fn softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for value in row.iter_mut() {
        *value = (*value - max).exp();
        sum += *value;
    }
    let inverse = 1.0 / sum;
    row.iter_mut().for_each(|value| *value *= inverse);
}

/// The backward pass of [`Softmax`], from its output and the output's gradient.
struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "softmax-last-dim-backward"
    }

    fn cpu_fwd(
        &self,
        y_storage: &CpuStorage,
        y_layout: &Layout,
        grad_storage: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = contiguous(y_storage, y_layout, "softmax backward")?;
        let grad = contiguous(grad_storage, grad_layout, "softmax backward")?;
        let width = last_dim(y_layout)?;
        let mut output = vec![0f32; y.len()];
        output
            .par_chunks_mut(width)
            .zip(y.par_chunks(width).zip(grad.par_chunks(width)))
            .for_each(|(out, (y, grad))| {
                let dot: f32 = y.iter().zip(grad).map(|(y, g)| y * g).sum();
                for ((o, y), g) in out.iter_mut().zip(y).zip(grad) {
                    *o = y * (g - dot);
                }
            });
        Ok((CpuStorage::F32(output), y_layout.shape().clone()))
    }
}

/// Returns the softmax of `xs` over its last dimension, differentiable.
pub fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    xs.contiguous()?.apply_op1(Softmax)
}

/// Layer normalisation over the last dimension with a weight and a bias.
#[derive(Clone, Copy)]
struct LayerNorm {
    eps: f32,
}

/// Returns the mean and the reciprocal standard deviation of one row.
fn row_statistics(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let variance = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
    (mean, 1.0 / (variance + eps).sqrt())
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "layer-norm-grad"
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
        let x = contiguous(x_storage, x_layout, "layer norm")?;
        let weight = contiguous(w_storage, w_layout, "layer norm")?;
        let bias = contiguous(b_storage, b_layout, "layer norm")?;
        let width = last_dim(x_layout)?;
        if weight.len() != width || bias.len() != width {
            candle_core::bail!("layer norm over {width} values with {} weights", weight.len());
        }

        let mut output = vec![0f32; x.len()];
        output
            .par_chunks_mut(width)
            .zip(x.par_chunks(width))
            .for_each(|(out, row)| {
                let (mean, rstd) = row_statistics(row, self.eps);
                for (((o, x), w), b) in out.iter_mut().zip(row).zip(weight).zip(bias) {
                    *o = (x - mean) * rstd * w + b;
                }
            });
        Ok((CpuStorage::F32(output), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _result: &Tensor,
        grad_result: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad_result = grad_result.contiguous()?;
        let grad_x = x.apply_op3_no_bwd(weight, &grad_result, &LayerNormInputGrad(*self))?;

        let parameter_grads = x.apply_op2_no_bwd(&grad_result, &LayerNormParameterGrad(*self))?;
        let grad_weight = parameter_grads.get(0)?;
        let grad_bias = parameter_grads.get(1)?;
        Ok((Some(grad_x), Some(grad_weight), Some(grad_bias)))
    }
}

/// The input gradient of [`LayerNorm`], from the input, the weight and the output's gradient:
/// with x̂ = (x − μ)·r and ĝ = dy ⊙ w, dx = r · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)).
struct LayerNormInputGrad(LayerNorm);

impl CustomOp3 for LayerNormInputGrad {
    fn name(&self) -> &'static str {
        "layer-norm-input-backward"
    }

    fn cpu_fwd(
        &self,
        x_storage: &CpuStorage,
        x_layout: &Layout,
        w_storage: &CpuStorage,
        w_layout: &Layout,
        g_storage: &CpuStorage,
        g_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(x_storage, x_layout, "layer norm backward")?;
        let weight = contiguous(w_storage, w_layout, "layer norm backward")?;
        let grad = contiguous(g_storage, g_layout, "layer norm backward")?;
        let width = last_dim(x_layout)?;
        let n = width as f32;

        let mut output = vec![0f32; x.len()];
        output
            .par_chunks_mut(width)
            .zip(x.par_chunks(width).zip(grad.par_chunks(width)))
            .for_each(|(out, (row, grad))| {
                let (mean, rstd) = row_statistics(row, self.0.eps);
                let (mut sum_g, mut sum_gx) = (0.0, 0.0);
                for ((x, g), w) in row.iter().zip(grad).zip(weight) {
                    let g = g * w;
                    sum_g += g;
                    sum_gx += g * (x - mean) * rstd;
                }
                let (mean_g, mean_gx) = (sum_g / n, sum_gx / n);
                for (((o, x), g), w) in out.iter_mut().zip(row).zip(grad).zip(weight) {
                    let normed = (x - mean) * rstd;
                    *o = rstd * (g * w - mean_g - normed * mean_gx);
                }
            });
        Ok((CpuStorage::F32(output), x_layout.shape().clone()))
    }
}

/// The weight and bias gradients of [`LayerNorm`], `[2, width]`: Σ dy ⊙ x̂ and Σ dy over rows.
struct LayerNormParameterGrad(LayerNorm);

/// Rows per task of the parameter gradient; partial sums are added in task order, so the result
/// does not depend on the thread count.
const ROWS_PER_TASK: usize = 256;

impl CustomOp2 for LayerNormParameterGrad {
    fn name(&self) -> &'static str {
        "layer-norm-parameter-backward"
    }

    fn cpu_fwd(
        &self,
        x_storage: &CpuStorage,
        x_layout: &Layout,
        g_storage: &CpuStorage,
        g_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(x_storage, x_layout, "layer norm backward")?;
        let grad = contiguous(g_storage, g_layout, "layer norm backward")?;
        let width = last_dim(x_layout)?;
        let task = ROWS_PER_TASK * width;

        let partials: Vec<Vec<f32>> = x
            .par_chunks(task)
            .zip(grad.par_chunks(task))
            .map(|(rows, grads)| {
                let mut sums = vec![0f32; 2 * width];
                for (row, grad) in rows.chunks(width).zip(grads.chunks(width)) {
                    let (mean, rstd) = row_statistics(row, self.0.eps);
                    let (weight_sums, bias_sums) = sums.split_at_mut(width);
                    for (((ws, bs), x), g) in
                        weight_sums.iter_mut().zip(bias_sums.iter_mut()).zip(row).zip(grad)
                    {
                        *ws += g * (x - mean) * rstd;
                        *bs += g;
                    }
                }
                sums
            })
            .collect();

        let mut total = vec![0f32; 2 * width];
        for partial in partials {
            total.iter_mut().zip(partial).for_each(|(t, p)| *t += p);
        }
        Ok((CpuStorage::F32(total), Shape::from((2, width))))
    }
}

/// Returns `(x − mean) / sqrt(var + eps) · weight + bias` over the last dimension, differentiable
/// in all three arguments.
pub fn layer_norm(xs: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    xs.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, LayerNorm { eps })
}

/// Inverted dropout whose mask is a function of `seed` and the element's position.
#[derive(Clone, Copy)]
struct SeededDropout {
    p: f32,
    seed: u64,
}

/// Returns the generator of one stream of mask bits: `seed` mixed with the stream's number.
pub(super) fn mask_rng(seed: u64, stream: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Returns the u32 below which a uniform draw drops a value, for dropout probability `p`.
pub(super) fn drop_threshold(p: f32) -> u32 {
    (f64::from(p) * 4_294_967_296.0).min(u32::MAX as f64) as u32
}

impl CustomOp1 for SeededDropout {
    fn name(&self) -> &'static str {
        "seeded-dropout"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = contiguous(storage, layout, "dropout")?;
        let threshold = drop_threshold(self.p);
        let keep_scale = 1.0 / (1.0 - self.p);

        let mut output = vec![0f32; input.len()];
        output
            .par_chunks_mut(CHUNK)
            .zip(input.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(index, (out, inp))| {
                let mut rng = mask_rng(self.seed, index as u64);
                for (o, x) in out.iter_mut().zip(inp) {
                    let keep = rng.next_u32() >= threshold;
                    *o = if keep { x * keep_scale } else { 0.0 };
                }
            });
        Ok((CpuStorage::F32(output), layout.shape().clone()))
    }

    /// Applies the same mask, drawn again from the seed, to the gradient.
    fn bwd(&self, _arg: &Tensor, _result: &Tensor, grad_result: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_result.contiguous()?.apply_op1_no_bwd(self)?))
    }
}

/// Zeroes each value of `xs` with probability `p` and scales the others by 1 / (1 − p), with a
/// mask determined by `seed`. Differentiable; the mask is not stored.
pub fn seeded_dropout(xs: &Tensor, p: f32, seed: u64) -> Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        candle_core::bail!("invalid dropout probability {p}: expected a value in [0, 1)");
    }
    xs.contiguous()?.apply_op1(SeededDropout { p, seed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::testing::max_difference;
    use candle_core::{Device, Var, D};

    fn random(shape: (usize, usize, usize), seed: u64) -> Tensor {
        let mut rng = SmallRng::seed_from_u64(seed);
        let count = shape.0 * shape.1 * shape.2;
        let values: Vec<f32> = (0..count)
            .map(|_| (rng.next_u32() as f32 / u32::MAX as f32) * 6.0 - 3.0)
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// candle's composed layer norm, the reference.
    fn reference_layer_norm(xs: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Tensor {
        let mean = xs.mean_keepdim(D::Minus1).unwrap();
        let centered = xs.broadcast_sub(&mean).unwrap();
        let variance = centered.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let normed = centered
            .broadcast_div(&(variance + eps).unwrap().sqrt().unwrap())
            .unwrap();
        normed
            .broadcast_mul(weight)
            .unwrap()
            .broadcast_add(bias)
            .unwrap()
    }

    #[test]
    fn softmax_gradient_matches_candle() {
        let xs = Var::from_tensor(&random((3, 5, 7), 1)).unwrap();
        let weights = random((3, 5, 7), 2);

        let ours = softmax_last_dim(xs.as_tensor()).unwrap();
        let theirs = candle_nn::ops::softmax(xs.as_tensor(), D::Minus1).unwrap();
        assert!(max_difference(&ours, &theirs) < 1e-6);

        let grad_ours = (ours * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        let grad_theirs = (theirs * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        let difference = max_difference(
            grad_ours.get(&xs).unwrap(),
            grad_theirs.get(&xs).unwrap(),
        );
        assert!(difference < 1e-5, "gradients differ by {difference}");
    }

    #[test]
    fn layer_norm_gradients_match_candle() {
        let xs = Var::from_tensor(&random((300, 2, 24), 3)).unwrap();
        let weight = Var::from_tensor(&random((1, 1, 24), 4).flatten_all().unwrap()).unwrap();
        let bias = Var::from_tensor(&random((1, 1, 24), 5).flatten_all().unwrap()).unwrap();
        let upstream = random((300, 2, 24), 6);

        let ours = layer_norm(&xs, &weight, &bias, 1e-12).unwrap();
        let theirs = reference_layer_norm(&xs, &weight, &bias, 1e-12);
        assert!(max_difference(&ours, &theirs) < 1e-5);

        let grad_ours = (ours * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let grad_theirs = (theirs * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, var) in [("input", &xs), ("weight", &weight), ("bias", &bias)] {
            let difference =
                max_difference(grad_ours.get(var).unwrap(), grad_theirs.get(var).unwrap());
            assert!(difference < 2e-4, "{name} gradients differ by {difference}");
        }
    }

    #[test]
    fn dropout_gradient_reuses_forward_mask() {
        let xs = Var::from_tensor(&(random((4, 100, 100), 7).abs().unwrap() + 1.0).unwrap()).unwrap();
        let dropped = seeded_dropout(&xs, 0.25, 11).unwrap();
        let values: Vec<f32> = dropped.flatten_all().unwrap().to_vec1().unwrap();
        let kept_fraction = values.iter().filter(|v| **v != 0.0).count() as f64 / values.len() as f64;
        assert!((kept_fraction - 0.75).abs() < 0.01, "kept fraction {kept_fraction}");

        let grads = dropped.sum_all().unwrap().backward().unwrap();
        let grad: Vec<f32> = grads.get(&xs).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for (value, g) in values.iter().zip(&grad) {
            let expected = if *value == 0.0 { 0.0 } else { 1.0 / 0.75 };
            assert!((g - expected).abs() < 1e-6, "gradient {g}, expected {expected}");
        }

        let again = seeded_dropout(&xs, 0.25, 11).unwrap();
        assert_eq!(max_difference(&again, &dropped), 0.0);
        let other_seed = seeded_dropout(&xs, 0.25, 12).unwrap();
        assert!(max_difference(&other_seed, &dropped) > 0.0);
    }
}
