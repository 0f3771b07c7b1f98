//! Dropout with masks drawn from one seeded generator per model.
//!
//! candle's CPU backend draws random tensors from an unseeded thread-local generator, so its
//! dropout cannot be reproduced. Here every dropout layer of a model shares one generator that
//! the trainer reseeds at each step; each call takes the seed of its mask from it. A run resumed
//! from a checkpoint therefore draws the same masks as the uninterrupted run.

use std::sync::{Arc, Mutex};

use candle_core::{Result, Tensor};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::grad_ops::seeded_dropout;

/// The generator shared by the dropout layers of one model.
#[derive(Debug, Clone)]
pub struct DropoutRng(Arc<Mutex<SmallRng>>);

impl DropoutRng {
    pub fn new(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(SmallRng::seed_from_u64(seed))))
    }

    /// Restarts the generator from `seed`.
    pub fn reseed(&self, seed: u64) {
        *self.0.lock().expect("dropout generator lock") = SmallRng::seed_from_u64(seed);
    }
}

/// Inverted dropout: in training, zeroes each value with probability `p` and scales the others
/// by 1 / (1 − p); outside training, the identity.
#[derive(Debug, Clone)]
pub struct Dropout {
    p: f32,
    rng: DropoutRng,
}

impl Dropout {
    pub fn new(p: f32, rng: DropoutRng) -> Self {
        Self { p, rng }
    }

    pub fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            return Ok(xs.clone());
        }
        match self.draw_seed() {
            Some(seed) => seeded_dropout(xs, self.p, seed),
            None => Ok(xs.clone()),
        }
    }

    /// Returns the dropout probability.
    pub fn probability(&self) -> f32 {
        self.p
    }

    /// Draws the seed of the next mask from the shared generator; `None` when `p` is 0.
    pub fn draw_seed(&self) -> Option<u64> {
        if self.p == 0.0 {
            return None;
        }
        Some(self.rng.0.lock().expect("dropout generator lock").random::<u64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn reseeded_masks_repeat() {
        let rng = DropoutRng::new(1);
        let dropout = Dropout::new(0.5, rng.clone());
        let xs = Tensor::ones((4, 64), candle_core::DType::F32, &Device::Cpu).unwrap();

        rng.reseed(9);
        let first = dropout.forward(&xs, true).unwrap().to_vec2::<f32>().unwrap();
        rng.reseed(9);
        let second = dropout.forward(&xs, true).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(first, second);

        let values: Vec<f32> = first.into_iter().flatten().collect();
        assert!(
            values.iter().all(|v| *v == 0.0 || *v == 2.0),
            "kept values are scaled by 2"
        );
        let kept = values.iter().filter(|v| **v > 0.0).count();
        assert!(
            (96..=160).contains(&kept),
            "about half of 256 values are kept, got {kept}"
        );
    }

    #[test]
    fn identity_outside_training() {
        let dropout = Dropout::new(0.9, DropoutRng::new(0));
        let xs = Tensor::arange(0f32, 8.0, &Device::Cpu).unwrap();
        let out = dropout.forward(&xs, false).unwrap();
        assert_eq!(out.to_vec1::<f32>().unwrap(), xs.to_vec1::<f32>().unwrap());
    }
}
