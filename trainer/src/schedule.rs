//! Learning-rate schedules.

use crate::error::{ModelError, Result};

/// Linear warmup from 0 to `peak_lr` over `warmup_steps`, then linear decay to 0 at
/// `total_steps`, as transformers' `get_linear_schedule_with_warmup` computes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    pub peak_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl LinearSchedule {
    /// Builds a schedule whose warmup covers `ceil(total_steps · warmup_ratio)` steps, as
    /// transformers' `TrainingArguments.get_warmup_steps` rounds it. `warmup_ratio` must be in
    /// [0, 1] and `peak_lr` finite and non-negative.
    pub fn from_ratio(peak_lr: f64, warmup_ratio: f64, total_steps: usize) -> Result<Self> {
        if !(0.0..=1.0).contains(&warmup_ratio) {
            return Err(ModelError::InvalidArgument(format!(
                "the warmup ratio must be in [0, 1], got {warmup_ratio}"
            )));
        }
        if !(peak_lr.is_finite() && peak_lr >= 0.0) {
            return Err(ModelError::InvalidArgument(format!(
                "the learning rate must be a non-negative number, got {peak_lr}"
            )));
        }

        let warmup_steps = (total_steps as f64 * warmup_ratio).ceil() as usize;
        Ok(Self {
            peak_lr,
            warmup_steps,
            total_steps,
        })
    }

    /// Returns the learning rate of optimizer step `step`, counted from 0.
    ///
    /// `peak · step / warmup` during warmup, then `peak · max(0, (total − step) / (total −
    /// warmup))`. Step 0 has learning rate 0 when there is a warmup, as in transformers. The
    /// divisors are at least 1, so a schedule with `warmup_steps ≥ total_steps` is defined too.
    pub fn learning_rate(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * (step as f64 / self.warmup_steps.max(1) as f64);
        }
        let remaining = self.total_steps.saturating_sub(step) as f64;
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        self.peak_lr * (remaining / decay_steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_linear_decay() {
        let schedule = LinearSchedule {
            peak_lr: 2.0,
            warmup_steps: 4,
            total_steps: 12,
        };
        // Warmup: 2 · s / 4. Decay: 2 · (12 − s) / 8.
        let expected = [
            (0, 0.0),
            (1, 0.5),
            (2, 1.0),
            (3, 1.5),
            (4, 2.0),
            (5, 1.75),
            (8, 1.0),
            (11, 0.25),
            (12, 0.0),
            (13, 0.0),
            (100, 0.0),
        ];
        for (step, lr) in expected {
            assert_eq!(schedule.learning_rate(step), lr, "step {step}");
        }
    }

    #[test]
    fn values_follow_transformers_formula() {
        let schedule = LinearSchedule {
            peak_lr: 5e-5,
            warmup_steps: 10,
            total_steps: 110,
        };
        assert_eq!(schedule.learning_rate(3), 5e-5 * (3.0 / 10.0));
        assert_eq!(schedule.learning_rate(10), 5e-5 * (100.0 / 100.0));
        assert_eq!(schedule.learning_rate(37), 5e-5 * (73.0 / 100.0));
    }

    #[test]
    fn no_warmup_starts_at_peak() {
        let schedule = LinearSchedule {
            peak_lr: 3.0,
            warmup_steps: 0,
            total_steps: 6,
        };
        assert_eq!(schedule.learning_rate(0), 3.0);
        assert_eq!(schedule.learning_rate(2), 2.0);
        assert_eq!(schedule.learning_rate(6), 0.0);
    }

    #[test]
    fn warmup_longer_than_training() {
        let schedule = LinearSchedule {
            peak_lr: 1.0,
            warmup_steps: 8,
            total_steps: 4,
        };
        assert_eq!(schedule.learning_rate(2), 0.25);
        assert_eq!(schedule.learning_rate(8), 0.0);
    }

    #[test]
    fn from_ratio_rounds_warmup_up() {
        let cases = [
            (0.1, 1000, 100),
            (0.06, 1234, 75),
            (0.0, 50, 0),
            (1.0, 7, 7),
            (0.5, 3, 2),
        ];
        for (ratio, total, warmup) in cases {
            let schedule = LinearSchedule::from_ratio(1e-4, ratio, total).unwrap();
            assert_eq!(schedule.warmup_steps, warmup, "ratio {ratio} of {total}");
            assert_eq!(schedule.total_steps, total);
            assert_eq!(schedule.peak_lr, 1e-4);
        }
    }

    #[test]
    fn from_ratio_rejects_invalid_values() {
        for ratio in [-0.1, 1.5, f64::NAN] {
            let message = LinearSchedule::from_ratio(1e-4, ratio, 10)
                .unwrap_err()
                .to_string();
            assert!(message.contains("warmup ratio"), "{message}");
        }
        for lr in [-1e-4, f64::INFINITY] {
            let message = LinearSchedule::from_ratio(lr, 0.1, 10).unwrap_err().to_string();
            assert!(message.contains("learning rate"), "{message}");
        }
    }
}
