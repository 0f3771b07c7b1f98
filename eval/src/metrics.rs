//! Ranking measures computed exactly as trec_eval 9 computes them.
//!
//! - A run's documents are ordered by score, descending, and ties by document id, descending
//!   (trec_eval's `comp_sim_docno`); the run's rank column is ignored.
//! - nDCG uses the graded relevance value as gain and divides the gain at rank r by log2(r + 1).
//!   The ideal ranking is truncated at the same cutoff. The relevance threshold does not apply to
//!   nDCG. (Older trec_eval releases did not discount rank 2; the values here equal those of
//!   pytrec-eval-terrier 0.5.11, which the end-to-end tests compare against.)
//! - Binary measures (RR, AP, R@k, P@k) count a document as relevant when its grade is at least
//!   the threshold. Documents missing from the qrels are not relevant.
//! - A query is evaluated when it is in both the run and the qrels; a query without relevant
//!   documents scores 0. Means are over evaluated queries.
//!
//! Measure names follow ir_measures: `nDCG@10`, `RR@10`, `RR`, `AP`, `R@100`, `P@10`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

/// A ranking measure, optionally with a rank cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Measure {
    Ndcg(Option<usize>),
    ReciprocalRank(Option<usize>),
    AveragePrecision,
    Recall(usize),
    Precision(usize),
}

impl FromStr for Measure {
    type Err = String;

    /// Parses ir_measures names, case-insensitively, with trec_eval aliases (`map`,
    /// `recip_rank`, `ndcg_cut_10`, `recall_100`, `P_10`).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let lower = name.trim().to_ascii_lowercase().replace('_', "@");
        let (base, cutoff) = match lower.split_once('@') {
            Some((base, cutoff)) => (base.to_string(), Some(cutoff.to_string())),
            None => (lower.clone(), None),
        };
        let cutoff = match cutoff.as_deref().map(|c| c.trim_start_matches("cut@")) {
            None => None,
            Some(text) => match text.parse::<usize>() {
                Ok(k) if k > 0 => Some(k),
                _ => {
                    return Err(format!(
                        "invalid cutoff in measure {name:?}: expected a positive integer"
                    ))
                }
            },
        };
        let required = |cutoff: Option<usize>| {
            cutoff.ok_or_else(|| format!("measure {name:?} needs a cutoff, such as @10"))
        };
        match base.as_str() {
            "ndcg" => Ok(Self::Ndcg(cutoff)),
            "rr" | "mrr" | "recip" => Ok(Self::ReciprocalRank(cutoff)),
            "ap" | "map" if cutoff.is_none() => Ok(Self::AveragePrecision),
            "r" | "recall" => Ok(Self::Recall(required(cutoff)?)),
            "p" | "precision" => Ok(Self::Precision(required(cutoff)?)),
            _ => Err(format!(
                "unknown measure {name:?}; known: nDCG@k, RR, RR@k, AP, R@k, P@k"
            )),
        }
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ndcg(None) => write!(f, "nDCG"),
            Self::Ndcg(Some(k)) => write!(f, "nDCG@{k}"),
            Self::ReciprocalRank(None) => write!(f, "RR"),
            Self::ReciprocalRank(Some(k)) => write!(f, "RR@{k}"),
            Self::AveragePrecision => write!(f, "AP"),
            Self::Recall(k) => write!(f, "R@{k}"),
            Self::Precision(k) => write!(f, "P@{k}"),
        }
    }
}

/// Relevance judgments: query id → document id → grade.
pub type Qrels = HashMap<String, HashMap<String, i32>>;

/// A run: query id → (document id, score) in any order.
pub type Run = HashMap<String, Vec<(String, f64)>>;

/// Per-query values of each measure, for the queries in both the run and the qrels.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub measures: Vec<Measure>,
    /// Query id → one value per measure, in `measures` order.
    pub per_query: BTreeMap<String, Vec<f64>>,
}

impl Evaluation {
    /// Returns the mean of each measure over the evaluated queries (0 when there are none).
    pub fn means(&self) -> Vec<f64> {
        let count = self.per_query.len().max(1) as f64;
        (0..self.measures.len())
            .map(|index| self.per_query.values().map(|values| values[index]).sum::<f64>() / count)
            .collect()
    }
}

/// Evaluates `run` against `qrels`; `threshold` is the lowest grade that binary measures count
/// as relevant (trec_eval's `-l`, 1 by default there).
pub fn evaluate(run: &Run, qrels: &Qrels, measures: &[Measure], threshold: i32) -> Evaluation {
    let mut per_query = BTreeMap::new();
    for (query_id, results) in run {
        let Some(judgments) = qrels.get(query_id) else {
            continue;
        };
        let ranked = ranked_grades(results, judgments);
        let values = measures
            .iter()
            .map(|measure| compute(*measure, &ranked, judgments, threshold))
            .collect();
        per_query.insert(query_id.clone(), values);
    }
    Evaluation {
        measures: measures.to_vec(),
        per_query,
    }
}

/// Orders a query's results as trec_eval does and returns each result's grade (`None` when
/// unjudged).
fn ranked_grades(results: &[(String, f64)], judgments: &HashMap<String, i32>) -> Vec<Option<i32>> {
    let mut order: Vec<&(String, f64)> = results.iter().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    order
        .iter()
        .map(|(doc_id, _)| judgments.get(doc_id).copied())
        .collect()
}

fn compute(
    measure: Measure,
    ranked: &[Option<i32>],
    judgments: &HashMap<String, i32>,
    threshold: i32,
) -> f64 {
    let is_relevant = |grade: &Option<i32>| grade.is_some_and(|g| g >= threshold);
    let relevant_total = judgments.values().filter(|&&g| g >= threshold).count();
    let top = |k: Option<usize>| &ranked[..k.unwrap_or(ranked.len()).min(ranked.len())];

    match measure {
        Measure::Ndcg(cutoff) => ndcg(ranked, judgments, cutoff),
        Measure::ReciprocalRank(cutoff) => top(cutoff)
            .iter()
            .position(is_relevant)
            .map(|index| 1.0 / (index + 1) as f64)
            .unwrap_or(0.0),
        Measure::AveragePrecision => {
            if relevant_total == 0 {
                return 0.0;
            }
            let mut found = 0;
            let mut sum = 0.0;
            for (index, grade) in ranked.iter().enumerate() {
                if is_relevant(grade) {
                    found += 1;
                    sum += found as f64 / (index + 1) as f64;
                }
            }
            sum / relevant_total as f64
        }
        Measure::Recall(k) => {
            if relevant_total == 0 {
                return 0.0;
            }
            top(Some(k)).iter().filter(|g| is_relevant(g)).count() as f64 / relevant_total as f64
        }
        Measure::Precision(k) => top(Some(k)).iter().filter(|g| is_relevant(g)).count() as f64 / k as f64,
    }
}

/// Returns the discount of the document at 0-based `index`: log2(rank + 1).
fn discount(index: usize) -> f64 {
    ((index + 2) as f64).log2()
}

fn ndcg(ranked: &[Option<i32>], judgments: &HashMap<String, i32>, cutoff: Option<usize>) -> f64 {
    let limit = |len: usize| cutoff.unwrap_or(len).min(len);
    let dcg: f64 = ranked[..limit(ranked.len())]
        .iter()
        .enumerate()
        .filter_map(|(index, grade)| grade.filter(|&g| g > 0).map(|g| g as f64 / discount(index)))
        .sum();

    let mut ideal: Vec<i32> = judgments.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let ideal_dcg: f64 = ideal[..limit(ideal.len())]
        .iter()
        .enumerate()
        .map(|(index, &g)| g as f64 / discount(index))
        .sum();

    if ideal_dcg > 0.0 {
        dcg / ideal_dcg
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qrels(grades: &[(&str, i32)]) -> Qrels {
        let judgments = grades.iter().map(|(d, g)| (d.to_string(), *g)).collect();
        HashMap::from([("q".to_string(), judgments)])
    }

    fn run(results: &[(&str, f64)]) -> Run {
        HashMap::from([(
            "q".to_string(),
            results.iter().map(|(d, s)| (d.to_string(), *s)).collect(),
        )])
    }

    fn value(measure: &str, run: &Run, qrels: &Qrels, threshold: i32) -> f64 {
        let measure: Measure = measure.parse().unwrap();
        evaluate(run, qrels, &[measure], threshold).per_query["q"][0]
    }

    #[test]
    fn names_parse_like_ir_measures() {
        assert_eq!("nDCG@10".parse::<Measure>().unwrap(), Measure::Ndcg(Some(10)));
        assert_eq!("ndcg_cut_10".parse::<Measure>().unwrap(), Measure::Ndcg(Some(10)));
        assert_eq!("map".parse::<Measure>().unwrap(), Measure::AveragePrecision);
        assert_eq!("recall@100".parse::<Measure>().unwrap(), Measure::Recall(100));
        assert_eq!("P_10".parse::<Measure>().unwrap(), Measure::Precision(10));
        assert_eq!("RR@10".parse::<Measure>().unwrap().to_string(), "RR@10");
        assert!("R".parse::<Measure>().is_err());
        assert!("nDCG@0".parse::<Measure>().is_err());
        assert!("bpref".parse::<Measure>().is_err());
    }

    #[test]
    fn ties_break_by_descending_doc_id() {
        let judged = qrels(&[("a", 1)]);
        let tied = run(&[("a", 1.0), ("b", 1.0)]);
        assert_eq!(value("RR", &tied, &judged, 1), 0.5, "b sorts before a on a tie");
    }

    #[test]
    fn ndcg_by_hand() {
        let judged = qrels(&[("a", 3), ("b", 2), ("c", 0)]);
        let ranked = run(&[("c", 3.0), ("b", 2.0), ("a", 1.0)]);
        // DCG: c 0 at rank 1, b 2/log2(3) at rank 2, a 3/log2(4) at rank 3.
        // Ideal: 3/log2(2) + 2/log2(3).
        let ideal = 3.0 + 2.0 / 3f64.log2();
        let expected = (2.0 / 3f64.log2() + 3.0 / 2.0) / ideal;
        assert!((value("nDCG", &ranked, &judged, 1) - expected).abs() < 1e-12);
        assert!((value("nDCG@2", &ranked, &judged, 1) - (2.0 / 3f64.log2()) / ideal).abs() < 1e-12);
    }

    #[test]
    fn binary_measures_use_threshold() {
        let judged = qrels(&[("a", 1), ("b", 2), ("z", 3)]);
        let ranked = run(&[("a", 3.0), ("x", 2.0), ("b", 1.0)]);
        assert_eq!(value("RR", &ranked, &judged, 2), 1.0 / 3.0);
        assert_eq!(value("P@2", &ranked, &judged, 1), 0.5);
        assert_eq!(value("R@3", &ranked, &judged, 2), 0.5);
        assert!((value("AP", &ranked, &judged, 1) - (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn query_without_relevant_documents_scores_zero() {
        let judged = qrels(&[("a", 0)]);
        let ranked = run(&[("a", 1.0)]);
        for measure in ["nDCG@10", "RR", "AP", "R@10", "P@10"] {
            assert_eq!(value(measure, &ranked, &judged, 1), 0.0, "{measure}");
        }
    }
}
