//! Model architectures, one file each.

pub mod bert;
pub mod dropout;
mod fused;
mod gelu;
mod grad_ops;

#[cfg(test)]
pub(crate) mod testing {
    use candle_core::Tensor;

    /// Returns the largest absolute difference between two tensors of the same shape.
    pub fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }
}
