//! Training objectives over groups of passages.
//!
//! A group is one query's list of passages: column 0 is the positive and columns 1.. are
//! negatives. Student logits, labels and teacher scores are `[queries, group]` tensors, and every
//! loss is the mean over queries.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Tensor, D};
use candle_nn::ops::{log_softmax, softmax};

use crate::error::{ModelError, Result};

/// The loss a training run minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossKind {
    /// Cross entropy over the group with the positive as target (InfoNCE, also called localized
    /// contrastive estimation).
    Contrastive,
    /// KL divergence from the teacher's softmax over the group to the student's.
    Distill,
    /// Mean squared error between the student's and the teacher's positive-negative margins
    /// (Hofstätter et al.).
    MarginMse,
    /// ListNet: cross entropy from the softmax of graded relevance labels to the student's
    /// softmax.
    ListNet,
}

impl LossKind {
    pub const ALL: [LossKind; 4] = [
        LossKind::Contrastive,
        LossKind::Distill,
        LossKind::MarginMse,
        LossKind::ListNet,
    ];

    /// Returns the name used on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            LossKind::Contrastive => "contrastive",
            LossKind::Distill => "distill",
            LossKind::MarginMse => "margin-mse",
            LossKind::ListNet => "listnet",
        }
    }
}

impl fmt::Display for LossKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LossKind {
    type Err = ModelError;

    fn from_str(name: &str) -> Result<Self> {
        if let Some(kind) = LossKind::ALL.into_iter().find(|kind| kind.name() == name) {
            return Ok(kind);
        }
        let valid: Vec<&str> = LossKind::ALL.iter().map(|kind| kind.name()).collect();
        Err(ModelError::InvalidArgument(format!(
            "unknown loss {name:?}. Valid losses: {}",
            valid.join(", ")
        )))
    }
}

/// A loss with its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    pub kind: LossKind,
    /// Softmax temperature of the distillation loss, which must be positive. The other kinds
    /// ignore it.
    pub temperature: f64,
    /// Weight of the contrastive loss mixed into the distillation loss:
    /// `alpha · contrastive + (1 − alpha) · distill`. Only valid with `LossKind::Distill`, and in
    /// [0, 1].
    pub alpha: Option<f64>,
}

impl Objective {
    /// Returns true when `loss` needs teacher scores.
    pub fn needs_teacher(&self) -> bool {
        matches!(self.kind, LossKind::Distill | LossKind::MarginMse)
    }

    /// Checks the temperature and alpha against the kind.
    pub fn validate(&self) -> Result<()> {
        if self.kind == LossKind::Distill && !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(ModelError::InvalidArgument(format!(
                "the distill temperature must be a positive number, got {}",
                self.temperature
            )));
        }
        let Some(alpha) = self.alpha else {
            return Ok(());
        };
        if self.kind != LossKind::Distill {
            return Err(ModelError::InvalidArgument(format!(
                "alpha mixes the contrastive loss into the distill loss, so it is invalid with the {} \
                 loss. Remove it or use distill",
                self.kind
            )));
        }
        if !(0.0..=1.0).contains(&alpha) {
            return Err(ModelError::InvalidArgument(format!(
                "alpha must be in [0, 1], got {alpha}"
            )));
        }
        Ok(())
    }

    /// Computes the loss of a batch as a scalar tensor: the mean over queries.
    ///
    /// `student` is `[queries, group]` with at least one query and a group of at least two
    /// (the positive and a negative). `labels` has the same shape and contains graded relevance; only
    /// ListNet reads it. `teacher` has the same shape and is required when `needs_teacher` is
    /// true. Labels and teacher scores are converted to the student's dtype and get no gradient.
    pub fn loss(&self, student: &Tensor, labels: &Tensor, teacher: Option<&Tensor>) -> Result<Tensor> {
        self.validate()?;
        check_student(student)?;
        check_shape("labels", labels, student)?;
        let labels = labels.detach().to_dtype(student.dtype())?;

        let teacher = match teacher {
            Some(teacher) => {
                check_shape("teacher scores", teacher, student)?;
                Some(teacher.detach().to_dtype(student.dtype())?)
            }
            None => None,
        };
        let teacher = match (self.needs_teacher(), teacher) {
            (true, None) => {
                return Err(ModelError::MissingTeacher {
                    loss: self.kind.to_string(),
                })
            }
            (true, Some(teacher)) => Some(check_finite("teacher scores", teacher)?),
            (false, teacher) => teacher,
        };

        match (self.kind, teacher) {
            (LossKind::Contrastive, _) => contrastive(student),
            (LossKind::Distill, Some(teacher)) => self.distill_mixed(student, &teacher),
            (LossKind::MarginMse, Some(teacher)) => margin_mse(student, &teacher),
            (LossKind::ListNet, _) => listnet(student, &check_finite("labels", labels)?),
            (kind, None) => unreachable!("the {kind} loss has a teacher after the check above"),
        }
    }

    /// Computes the distillation loss, mixed with the contrastive loss when `alpha` is set.
    fn distill_mixed(&self, student: &Tensor, teacher: &Tensor) -> Result<Tensor> {
        let distill = distill(student, teacher, self.temperature)?;
        let Some(alpha) = self.alpha else {
            return Ok(distill);
        };
        let contrastive = contrastive(student)?;
        Ok(((contrastive * alpha)? + (distill * (1.0 - alpha))?)?)
    }
}

fn check_student(student: &Tensor) -> Result<()> {
    let valid = matches!(student.dims(), &[queries, group] if queries >= 1 && group >= 2);
    if !valid {
        return Err(ModelError::InvalidArgument(format!(
            "student logits must be [queries, group] with at least one query and a group of at least \
             two passages (the positive and a negative), got shape {:?}",
            student.dims()
        )));
    }
    if !student.dtype().is_float() {
        return Err(ModelError::InvalidArgument(format!(
            "student logits must be a float tensor, got {:?}",
            student.dtype()
        )));
    }
    Ok(())
}

fn check_shape(name: &str, tensor: &Tensor, student: &Tensor) -> Result<()> {
    if tensor.dims() == student.dims() {
        return Ok(());
    }
    Err(ModelError::ShapeMismatch {
        tensor: name.to_string(),
        expected: student.dims().to_vec(),
        found: tensor.dims().to_vec(),
    })
}

/// Returns `tensor` when all its values are finite. The sum is taken in f64 so that large finite
/// values cannot overflow it.
fn check_finite(name: &str, tensor: Tensor) -> Result<Tensor> {
    let sum = tensor.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
    if sum.is_finite() {
        return Ok(tensor);
    }
    Err(ModelError::InvalidArgument(format!(
        "{name} contain NaN or infinite values. Every passage of a group needs a finite value"
    )))
}

/// Computes `−log softmax(student)[0]`, averaged over queries.
fn contrastive(student: &Tensor) -> Result<Tensor> {
    let log_probs = log_softmax(student, D::Minus1)?;
    let positive = log_probs.narrow(1, 0, 1)?;
    Ok(positive.mean_all()?.neg()?)
}

/// Computes `KL(softmax(teacher / T) ‖ softmax(student / T)) · T²`, summed over the group and
/// averaged over queries. Soft-target gradients scale as 1/T², so the T² factor keeps
/// their magnitude roughly independent of T.
fn distill(student: &Tensor, teacher: &Tensor, temperature: f64) -> Result<Tensor> {
    let student_log_probs = log_softmax(&(student / temperature)?, D::Minus1)?;
    let teacher_log_probs = log_softmax(&(teacher / temperature)?, D::Minus1)?;
    let teacher_probs = teacher_log_probs.exp()?;

    let pointwise = (teacher_probs * (teacher_log_probs - student_log_probs)?)?;
    let divergence = pointwise.sum(D::Minus1)?.mean_all()?;
    Ok((divergence * (temperature * temperature))?)
}

/// Computes the mean over queries and negatives `j ≥ 1` of `((s₀ − sⱼ) − (t₀ − tⱼ))²`.
fn margin_mse(student: &Tensor, teacher: &Tensor) -> Result<Tensor> {
    let student_margins = positive_margins(student)?;
    let teacher_margins = positive_margins(teacher)?;
    Ok((student_margins - teacher_margins)?.sqr()?.mean_all()?)
}

/// Returns `x₀ − xⱼ` for the negatives `j ≥ 1`, `[queries, group − 1]`.
fn positive_margins(scores: &Tensor) -> Result<Tensor> {
    let group = scores.dim(1)?;
    let positive = scores.narrow(1, 0, 1)?;
    let negatives = scores.narrow(1, 1, group - 1)?;
    Ok(positive.broadcast_sub(&negatives)?)
}

/// Computes `−Σ softmax(labels) · log softmax(student)` over the group, averaged over queries.
fn listnet(student: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let target = softmax(labels, D::Minus1)?;
    let log_probs = log_softmax(student, D::Minus1)?;
    let cross_entropy = (target * log_probs)?.sum(D::Minus1)?;
    Ok(cross_entropy.mean_all()?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    const STUDENT: [[f64; 3]; 2] = [[2.0, 1.0, 0.5], [0.3, 0.8, -0.4]];
    const TEACHER: [[f64; 3]; 2] = [[3.0, 0.5, 1.0], [1.0, 2.0, 0.0]];
    const LABELS: [[f64; 3]; 2] = [[2.0, 1.0, 0.0], [1.0, 0.0, 0.0]];

    fn tensor(rows: &[[f64; 3]], dtype: DType) -> Tensor {
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), 3), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    fn objective(kind: LossKind) -> Objective {
        Objective {
            kind,
            temperature: 1.0,
            alpha: None,
        }
    }

    fn scalar(loss: Tensor) -> f64 {
        loss.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
    }

    /// Computes `log softmax(row)` with the log-sum-exp written out.
    fn log_softmax_row(row: &[f64; 3]) -> [f64; 3] {
        let max = row[0].max(row[1]).max(row[2]);
        let log_sum = ((row[0] - max).exp() + (row[1] - max).exp() + (row[2] - max).exp()).ln() + max;
        [row[0] - log_sum, row[1] - log_sum, row[2] - log_sum]
    }

    fn assert_close(actual: f64, expected: f64, tolerance: f64) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "got {actual}, expected {expected} (tolerance {tolerance})"
        );
    }

    #[test]
    fn loss_kind_parses_and_displays_names() {
        for (name, kind) in [
            ("contrastive", LossKind::Contrastive),
            ("distill", LossKind::Distill),
            ("margin-mse", LossKind::MarginMse),
            ("listnet", LossKind::ListNet),
        ] {
            assert_eq!(name.parse::<LossKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), name);
        }
    }

    #[test]
    fn loss_kind_rejects_unknown_name() {
        let message = "mse".parse::<LossKind>().unwrap_err().to_string();
        assert!(message.contains("\"mse\""), "{message}");
        assert!(
            message.contains("contrastive, distill, margin-mse, listnet"),
            "{message}"
        );
    }

    #[test]
    fn contrastive_matches_hand_computation() {
        let row0 = log_softmax_row(&STUDENT[0]);
        let row1 = log_softmax_row(&STUDENT[1]);
        let expected = -(row0[0] + row1[0]) / 2.0;

        let student = tensor(&STUDENT, DType::F32);
        let labels = tensor(&LABELS, DType::F32);
        let loss = objective(LossKind::Contrastive)
            .loss(&student, &labels, None)
            .unwrap();
        assert_eq!(loss.dims(), &[] as &[usize]);
        assert_close(scalar(loss), expected, 1e-6);
    }

    #[test]
    fn contrastive_ignores_temperature() {
        let student = tensor(&STUDENT, DType::F32);
        let labels = tensor(&LABELS, DType::F32);
        let plain = objective(LossKind::Contrastive)
            .loss(&student, &labels, None)
            .unwrap();
        let tempered = Objective {
            temperature: 4.0,
            ..objective(LossKind::Contrastive)
        }
        .loss(&student, &labels, None)
        .unwrap();
        assert_eq!(scalar(plain), scalar(tempered));
    }

    /// KL(p ‖ q) summed over the group, with p and q the softmax of `teacher / t` and
    /// `student / t`.
    fn kl_row(student: &[f64; 3], teacher: &[f64; 3], t: f64) -> f64 {
        let log_q = log_softmax_row(&student.map(|x| x / t));
        let log_p = log_softmax_row(&teacher.map(|x| x / t));
        (0..3).map(|j| log_p[j].exp() * (log_p[j] - log_q[j])).sum()
    }

    #[test]
    fn distill_matches_hand_computation() {
        let student = tensor(&STUDENT, DType::F32);
        let teacher = tensor(&TEACHER, DType::F32);
        let labels = tensor(&LABELS, DType::F32);

        for t in [1.0, 2.0, 0.5] {
            let expected =
                (kl_row(&STUDENT[0], &TEACHER[0], t) + kl_row(&STUDENT[1], &TEACHER[1], t)) / 2.0 * t * t;
            let distill = Objective {
                temperature: t,
                ..objective(LossKind::Distill)
            };
            let loss = distill.loss(&student, &labels, Some(&teacher)).unwrap();
            assert_close(scalar(loss), expected, 1e-6);
        }
    }

    #[test]
    fn distill_is_zero_for_equal_scores() {
        let student = tensor(&STUDENT, DType::F32);
        let labels = tensor(&LABELS, DType::F32);
        let loss = objective(LossKind::Distill)
            .loss(&student, &labels, Some(&student))
            .unwrap();
        assert_close(scalar(loss), 0.0, 1e-7);
    }

    #[test]
    fn distill_with_alpha_mixes_contrastive() {
        let t = 2.0;
        let alpha = 0.3;
        let contrastive = -(log_softmax_row(&STUDENT[0])[0] + log_softmax_row(&STUDENT[1])[0]) / 2.0;
        let distill =
            (kl_row(&STUDENT[0], &TEACHER[0], t) + kl_row(&STUDENT[1], &TEACHER[1], t)) / 2.0 * t * t;
        let expected = alpha * contrastive + (1.0 - alpha) * distill;

        let objective = Objective {
            kind: LossKind::Distill,
            temperature: t,
            alpha: Some(alpha),
        };
        let student = tensor(&STUDENT, DType::F32);
        let teacher = tensor(&TEACHER, DType::F32);
        let labels = tensor(&LABELS, DType::F32);
        let loss = objective.loss(&student, &labels, Some(&teacher)).unwrap();
        assert_close(scalar(loss), expected, 1e-6);
    }

    #[test]
    fn margin_mse_matches_hand_computation() {
        // Query 0: student margins 1.0 and 1.5, teacher margins 2.5 and 2.0.
        // Query 1: student margins −0.5 and 0.7, teacher margins −1.0 and 1.0.
        let squared_errors = [
            (1.0 - 2.5f64).powi(2),
            (1.5 - 2.0f64).powi(2),
            (-0.5 - -1.0f64).powi(2),
            (0.7 - 1.0f64).powi(2),
        ];
        let expected = squared_errors.iter().sum::<f64>() / 4.0;

        let student = tensor(&STUDENT, DType::F32);
        let teacher = tensor(&TEACHER, DType::F32);
        let labels = tensor(&LABELS, DType::F32);
        let loss = objective(LossKind::MarginMse)
            .loss(&student, &labels, Some(&teacher))
            .unwrap();
        assert_close(scalar(loss), expected, 1e-6);
    }

    #[test]
    fn listnet_matches_hand_computation() {
        let cross_entropy = |student: &[f64; 3], labels: &[f64; 3]| -> f64 {
            let target = log_softmax_row(labels).map(f64::exp);
            let log_probs = log_softmax_row(student);
            -(0..3).map(|j| target[j] * log_probs[j]).sum::<f64>()
        };
        let expected =
            (cross_entropy(&STUDENT[0], &LABELS[0]) + cross_entropy(&STUDENT[1], &LABELS[1])) / 2.0;

        let student = tensor(&STUDENT, DType::F32);
        let labels = tensor(&LABELS, DType::F32);
        let loss = objective(LossKind::ListNet)
            .loss(&student, &labels, None)
            .unwrap();
        assert_close(scalar(loss), expected, 1e-6);
    }

    #[test]
    fn needs_teacher_per_kind() {
        assert!(!objective(LossKind::Contrastive).needs_teacher());
        assert!(objective(LossKind::Distill).needs_teacher());
        assert!(objective(LossKind::MarginMse).needs_teacher());
        assert!(!objective(LossKind::ListNet).needs_teacher());
    }

    #[test]
    fn missing_teacher_is_an_error() {
        let student = tensor(&STUDENT, DType::F32);
        let labels = tensor(&LABELS, DType::F32);
        for kind in [LossKind::Distill, LossKind::MarginMse] {
            let error = objective(kind).loss(&student, &labels, None).unwrap_err();
            assert!(
                matches!(&error, ModelError::MissingTeacher { loss } if loss == kind.name()),
                "{error}"
            );
        }
    }

    #[test]
    fn shape_mismatch_names_shapes() {
        let student = tensor(&STUDENT, DType::F32);
        let labels = tensor(&LABELS, DType::F32);
        let short_teacher = tensor(&TEACHER[..1], DType::F32);

        let error = objective(LossKind::Distill)
            .loss(&student, &labels, Some(&short_teacher))
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("teacher scores"), "{message}");
        assert!(message.contains("[1, 3]"), "{message}");
        assert!(message.contains("[2, 3]"), "{message}");

        let error = objective(LossKind::ListNet)
            .loss(&student, &labels.narrow(1, 0, 2).unwrap(), None)
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("labels"), "{message}");
        assert!(message.contains("[2, 2]"), "{message}");
    }

    #[test]
    fn student_needs_a_negative() {
        let student = tensor(&STUDENT, DType::F32).narrow(1, 0, 1).unwrap();
        let labels = student.clone();
        let message = objective(LossKind::Contrastive)
            .loss(&student, &labels, None)
            .unwrap_err()
            .to_string();
        assert!(message.contains("[2, 1]"), "{message}");
    }

    #[test]
    fn non_finite_teacher_is_an_error() {
        let student = tensor(&STUDENT, DType::F32);
        let labels = tensor(&LABELS, DType::F32);
        let teacher = tensor(&[[1.0, f64::NAN, 0.0], [0.0, 1.0, 2.0]], DType::F32);
        let message = objective(LossKind::MarginMse)
            .loss(&student, &labels, Some(&teacher))
            .unwrap_err()
            .to_string();
        assert!(message.contains("NaN"), "{message}");
    }

    #[test]
    fn invalid_alpha_and_temperature() {
        let student = tensor(&STUDENT, DType::F32);
        let teacher = tensor(&TEACHER, DType::F32);
        let labels = tensor(&LABELS, DType::F32);
        let invalid = [
            Objective {
                alpha: Some(1.5),
                ..objective(LossKind::Distill)
            },
            Objective {
                alpha: Some(-0.1),
                ..objective(LossKind::Distill)
            },
            Objective {
                alpha: Some(0.5),
                ..objective(LossKind::Contrastive)
            },
            Objective {
                temperature: 0.0,
                ..objective(LossKind::Distill)
            },
        ];
        for objective in invalid {
            let result = objective.loss(&student, &labels, Some(&teacher));
            assert!(
                matches!(result, Err(ModelError::InvalidArgument(_))),
                "{objective:?} was accepted"
            );
        }
    }

    /// Compares the gradient from `backward` with central finite differences, in f64.
    fn check_gradient(objective: Objective) {
        let student = Var::from_tensor(&tensor(&STUDENT, DType::F64)).unwrap();
        let teacher = tensor(&TEACHER, DType::F64);
        let labels = tensor(&LABELS, DType::F64);
        let loss_at = |values: &Tensor| scalar(objective.loss(values, &labels, Some(&teacher)).unwrap());

        let loss = objective
            .loss(student.as_tensor(), &labels, Some(&teacher))
            .unwrap();
        let grads = loss.backward().unwrap();
        let analytic: Vec<f64> = grads
            .get(student.as_tensor())
            .expect("the student has a gradient")
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();

        let h = 1e-6;
        let base: Vec<f64> = STUDENT.iter().flatten().copied().collect();
        for (index, analytic) in analytic.iter().enumerate() {
            let shifted = |delta: f64| {
                let mut values = base.clone();
                values[index] += delta;
                loss_at(&Tensor::from_vec(values, (2, 3), &Device::Cpu).unwrap())
            };
            let numeric = (shifted(h) - shifted(-h)) / (2.0 * h);
            assert!(
                (analytic - numeric).abs() <= 1e-7,
                "{}: element {index}: backward {analytic}, finite difference {numeric}",
                objective.kind
            );
        }
    }

    #[test]
    fn contrastive_gradient_matches_finite_differences() {
        check_gradient(objective(LossKind::Contrastive));
    }

    #[test]
    fn distill_gradient_matches_finite_differences() {
        check_gradient(Objective {
            temperature: 2.0,
            ..objective(LossKind::Distill)
        });
        check_gradient(Objective {
            kind: LossKind::Distill,
            temperature: 0.5,
            alpha: Some(0.4),
        });
    }

    #[test]
    fn margin_mse_gradient_matches_finite_differences() {
        check_gradient(objective(LossKind::MarginMse));
    }

    #[test]
    fn listnet_gradient_matches_finite_differences() {
        check_gradient(objective(LossKind::ListNet));
    }

    #[test]
    fn contrastive_gradient_is_softmax_minus_target() {
        let student = Var::from_tensor(&tensor(&STUDENT, DType::F64)).unwrap();
        let labels = tensor(&LABELS, DType::F64);
        let loss = objective(LossKind::Contrastive)
            .loss(student.as_tensor(), &labels, None)
            .unwrap();
        let grads = loss.backward().unwrap();
        let gradient: Vec<Vec<f64>> = grads.get(student.as_tensor()).unwrap().to_vec2().unwrap();

        for (row, gradient_row) in STUDENT.iter().zip(&gradient) {
            let probs = log_softmax_row(row).map(f64::exp);
            let target = [1.0, 0.0, 0.0];
            for j in 0..3 {
                let expected = (probs[j] - target[j]) / 2.0;
                assert_close(gradient_row[j], expected, 1e-12);
            }
        }
    }
}
