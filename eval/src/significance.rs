//! Paired significance tests between two runs' per-query values of one measure.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Per-query comparison of run A against run B on the queries both were evaluated on.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub queries: usize,
    pub mean_a: f64,
    pub mean_b: f64,
    /// Queries where A is higher, equal, lower than B.
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
    /// Student's t statistic of the paired differences A − B.
    pub t: f64,
    /// Two-sided p-value of the paired t-test.
    pub t_test_p: f64,
    /// Two-sided p-value of the paired randomization (sign-flip) test.
    pub randomization_p: f64,
    pub trials: usize,
}

/// Compares paired values `(a, b)`, one pair per query.
///
/// The randomization test flips the sign of each difference with probability 1/2 in each of
/// `trials` seeded trials and counts trials whose mean difference is at least as far from 0 as
/// the observed one. The p-value is (count + 1) / (trials + 1), which never reports 0 for a
/// finite number of trials (Phipson and Smyth, 2010).
pub fn compare(pairs: &[(f64, f64)], trials: usize, seed: u64) -> Comparison {
    let differences: Vec<f64> = pairs.iter().map(|(a, b)| a - b).collect();
    let n = pairs.len();
    let mean = |values: &mut dyn Iterator<Item = f64>| values.sum::<f64>() / n.max(1) as f64;

    let (t, t_test_p) = paired_t_test(&differences);
    Comparison {
        queries: n,
        mean_a: mean(&mut pairs.iter().map(|(a, _)| *a)),
        mean_b: mean(&mut pairs.iter().map(|(_, b)| *b)),
        wins: differences.iter().filter(|d| **d > 0.0).count(),
        ties: differences.iter().filter(|d| **d == 0.0).count(),
        losses: differences.iter().filter(|d| **d < 0.0).count(),
        t,
        t_test_p,
        randomization_p: randomization_test(&differences, trials, seed),
        trials,
    }
}

/// Returns the t statistic and the two-sided p-value of a paired t-test on `differences`.
/// With fewer than two values, or all differences equal, the test is undefined: `t` is NaN, and
/// p is 1 when every difference is 0 and NaN otherwise.
fn paired_t_test(differences: &[f64]) -> (f64, f64) {
    let n = differences.len() as f64;
    if differences.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    let mean = differences.iter().sum::<f64>() / n;
    let variance = differences.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0);
    if variance == 0.0 {
        let p = if mean == 0.0 { 1.0 } else { f64::NAN };
        return (f64::NAN, p);
    }

    let t = mean / (variance / n).sqrt();
    let distribution = StudentsT::new(0.0, 1.0, n - 1.0).expect("degrees of freedom are positive");
    let p = 2.0 * (1.0 - distribution.cdf(t.abs()));
    (t, p.min(1.0))
}

fn randomization_test(differences: &[f64], trials: usize, seed: u64) -> f64 {
    let n = differences.len().max(1) as f64;
    let observed = (differences.iter().sum::<f64>() / n).abs();
    // Relative slack so that sums equal to the observed one up to rounding count as extreme.
    let tolerance = 1e-12 * observed.max(1.0);

    let mut rng = StdRng::seed_from_u64(seed);
    let mut extreme = 0usize;
    for _ in 0..trials {
        let flipped: f64 = differences
            .iter()
            .map(|d| if rng.random_bool(0.5) { -d } else { *d })
            .sum();
        if (flipped / n).abs() >= observed - tolerance {
            extreme += 1;
        }
    }
    (extreme + 1) as f64 / (trials + 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_test_matches_hand_computation() {
        // Differences 0.1, 0.2, 0.3, 0.4: mean 0.25, sample standard deviation 0.1291, so
        // t = 0.25 / (0.1291 / 2) = 3.873 with 3 degrees of freedom; scipy.stats.ttest_rel gives
        // p = 0.030466.
        let pairs = [(0.5, 0.4), (0.6, 0.4), (0.7, 0.4), (0.8, 0.4)];
        let comparison = compare(&pairs, 1000, 7);
        assert!((comparison.t - 3.872983).abs() < 1e-5, "t = {}", comparison.t);
        assert!(
            (comparison.t_test_p - 0.030466).abs() < 1e-5,
            "p = {}",
            comparison.t_test_p
        );
        assert_eq!((comparison.wins, comparison.ties, comparison.losses), (4, 0, 0));
    }

    #[test]
    fn randomization_enumerates_small_case() {
        // With 4 positive differences, only the all-positive and all-negative sign patterns are
        // as extreme as the observed mean: 2 of 16 patterns, so p is close to 0.125.
        let pairs = [(0.5, 0.4), (0.6, 0.4), (0.7, 0.4), (0.8, 0.4)];
        let comparison = compare(&pairs, 20_000, 11);
        assert!(
            (comparison.randomization_p - 0.125).abs() < 0.01,
            "p = {}",
            comparison.randomization_p
        );
    }

    #[test]
    fn randomization_is_seeded() {
        let pairs: Vec<(f64, f64)> = (0..30)
            .map(|i| (f64::from(i % 7) / 7.0, f64::from(i % 5) / 5.0))
            .collect();
        let first = compare(&pairs, 2000, 3);
        let second = compare(&pairs, 2000, 3);
        assert_eq!(first.randomization_p, second.randomization_p);
    }

    #[test]
    fn identical_runs_tie_everywhere() {
        let pairs = [(0.3, 0.3), (0.9, 0.9), (0.0, 0.0)];
        let comparison = compare(&pairs, 100, 1);
        assert_eq!(comparison.ties, 3);
        assert_eq!(comparison.t_test_p, 1.0);
        assert_eq!(comparison.randomization_p, 1.0);
    }
}
