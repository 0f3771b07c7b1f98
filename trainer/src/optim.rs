//! The AdamW optimizer with state that can be saved and restored, gradient accumulation and
//! gradient clipping.
//!
//! candle-nn's `AdamW` keeps its moment estimates private, so training could not resume from a
//! checkpoint with it. This one follows PyTorch's `torch.optim.AdamW` (the single-tensor path,
//! without AMSGrad).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;

use crate::error::{ModelError, Result};
use crate::optim_kernels as kernels;

/// Metadata key of the optimizer step count in a saved state file.
const STEP_KEY: &str = "step";

/// Hyperparameters of AdamW. The defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    /// Peak learning rate. `AdamW::step` takes each step's learning rate from the caller, so a
    /// schedule sets it.
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay: each step multiplies the parameters by `1 − lr · weight_decay`.
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

impl AdamWParams {
    /// Checks the ranges PyTorch checks: non-negative `lr`, `eps` and `weight_decay`, and betas
    /// in [0, 1).
    pub fn validate(&self) -> Result<()> {
        let checks = [
            ("lr", self.lr, self.lr >= 0.0, "non-negative"),
            ("eps", self.eps, self.eps >= 0.0, "non-negative"),
            (
                "weight_decay",
                self.weight_decay,
                self.weight_decay >= 0.0,
                "non-negative",
            ),
            ("beta1", self.beta1, (0.0..1.0).contains(&self.beta1), "in [0, 1)"),
            ("beta2", self.beta2, (0.0..1.0).contains(&self.beta2), "in [0, 1)"),
        ];
        for (name, value, valid, range) in checks {
            if !valid || !value.is_finite() {
                return Err(ModelError::InvalidArgument(format!(
                    "AdamW {name} must be {range}, got {value}"
                )));
            }
        }
        Ok(())
    }
}

/// One parameter and its moment estimates.
struct ParamState {
    name: String,
    var: Var,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// Updates applied to this parameter. It lags the optimizer's count when a step had no
    /// gradient for it, and the bias correction uses it, as PyTorch's per-parameter `step` does.
    step: usize,
}

/// AdamW over a fixed, named set of variables.
pub struct AdamW {
    params: AdamWParams,
    states: Vec<ParamState>,
    steps: usize,
}

impl AdamW {
    /// Creates the optimizer with zero moments. Variables are kept sorted by name, so the state
    /// file does not depend on the order of `vars`. Names must be unique, and variables must be
    /// F32 or F64.
    pub fn new(vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self> {
        params.validate()?;
        let mut vars = vars;
        vars.sort_by(|(left, _), (right, _)| left.cmp(right));

        let mut states: Vec<ParamState> = Vec::with_capacity(vars.len());
        for (name, var) in vars {
            if states.last().is_some_and(|previous| previous.name == name) {
                return Err(ModelError::InvalidArgument(format!(
                    "AdamW was given two variables named {name:?}"
                )));
            }
            if !matches!(var.dtype(), DType::F32 | DType::F64) {
                return Err(ModelError::InvalidArgument(format!(
                    "AdamW supports F32 and F64 variables, but {name:?} is {:?}",
                    var.dtype()
                )));
            }
            // Two separate buffers: the fast update writes the moments in place.
            states.push(ParamState {
                name,
                exp_avg: var.as_tensor().zeros_like()?,
                exp_avg_sq: var.as_tensor().zeros_like()?,
                var,
                step: 0,
            });
        }
        Ok(Self {
            params,
            states,
            steps: 0,
        })
    }

    /// Creates the optimizer over every variable of `varmap`.
    pub fn from_varmap(varmap: &VarMap, params: AdamWParams) -> Result<Self> {
        let vars = varmap.data().lock().expect("varmap lock");
        let named = vars
            .iter()
            .map(|(name, var)| (name.clone(), var.clone()))
            .collect();
        Self::new(named, params)
    }

    pub fn params(&self) -> &AdamWParams {
        &self.params
    }

    /// Returns the number of `step` calls, including those restored by `load_state`.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Returns the optimized variables, sorted by name.
    pub fn vars(&self) -> Vec<Var> {
        self.states.iter().map(|state| state.var.clone()).collect()
    }

    /// Applies one AdamW update with learning rate `lr` to every variable that has a gradient in
    /// `grads`. Variables without one are left unchanged, weight decay included, as PyTorch
    /// skips parameters whose `grad` is `None`. Gradient shapes are checked before any variable
    /// changes.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(ModelError::InvalidArgument(format!(
                "the learning rate must be a non-negative number, got {lr}"
            )));
        }
        for state in &self.states {
            if let Some(grad) = grads.get(state.var.as_tensor()) {
                check_gradient_shape(state, grad)?;
            }
        }

        for state in &mut self.states {
            if let Some(grad) = grads.get(state.var.as_tensor()) {
                update(state, grad, lr, &self.params)?;
            }
        }
        self.steps += 1;
        Ok(())
    }

    /// Writes the moment estimates to a safetensors file as `exp_avg.<name>` and
    /// `exp_avg_sq.<name>`, with the step counts in the metadata. The file is written to a
    /// temporary file in the same folder and renamed over `path`, so `path` contains either the old
    /// file or the complete new one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = Vec::with_capacity(2 * self.states.len());
        for state in &self.states {
            tensors.push((format!("exp_avg.{}", state.name), tensor_bytes(&state.exp_avg)?));
            tensors.push((
                format!("exp_avg_sq.{}", state.name),
                tensor_bytes(&state.exp_avg_sq)?,
            ));
        }
        let views = tensors
            .iter()
            .map(|(name, (dtype, shape, bytes))| {
                let view = TensorView::new(*dtype, shape.clone(), bytes)
                    .map_err(|e| write_error(path, &e.to_string()))?;
                Ok((name.as_str(), view))
            })
            .collect::<Result<Vec<_>>>()?;

        let bytes = safetensors::serialize(views, Some(self.step_metadata()))
            .map_err(|e| write_error(path, &e.to_string()))?;
        write_atomically(path, &bytes)
    }

    /// Returns the metadata of a state file: the optimizer's step count under `step`, and each
    /// parameter's count under `step.<name>`.
    fn step_metadata(&self) -> HashMap<String, String> {
        let mut metadata = HashMap::from([(STEP_KEY.to_string(), self.steps.to_string())]);
        for state in &self.states {
            metadata.insert(format!("{STEP_KEY}.{}", state.name), state.step.to_string());
        }
        metadata
    }

    /// Restores the state written by `save`. The file must hold exactly the moments of this
    /// optimizer's variables, with their shapes and dtypes. Nothing changes when it does not.
    pub fn load_state(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let metadata = read_metadata(path, &bytes)?;
        let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| invalid_state(path, "(file)", format!("cannot read the safetensors file: {e}")))?;

        let steps = metadata_count(path, &metadata, STEP_KEY)?;
        let mut restored = Vec::with_capacity(self.states.len());
        for state in &self.states {
            let exp_avg = take_moment(path, &mut tensors, &format!("exp_avg.{}", state.name), &state.var)?;
            let exp_avg_sq = take_moment(
                path,
                &mut tensors,
                &format!("exp_avg_sq.{}", state.name),
                &state.var,
            )?;
            let step = metadata_count(path, &metadata, &format!("{STEP_KEY}.{}", state.name))?;
            restored.push((exp_avg, exp_avg_sq, step));
        }
        if let Some(name) = tensors.keys().min() {
            let message = "is not a moment of any variable of this optimizer".to_string();
            return Err(invalid_state(path, name, message));
        }

        for (state, (exp_avg, exp_avg_sq, step)) in self.states.iter_mut().zip(restored) {
            state.exp_avg = exp_avg;
            state.exp_avg_sq = exp_avg_sq;
            state.step = step;
        }
        self.steps = steps;
        Ok(())
    }
}

/// Applies PyTorch's single-tensor AdamW update to one parameter:
///
/// ```text
/// p ← p · (1 − lr · wd)
/// m ← β₁ · m + (1 − β₁) · g
/// v ← β₂ · v + (1 − β₂) · g²
/// p ← p − lr / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
/// ```
fn update(state: &mut ParamState, grad: &Tensor, lr: f64, params: &AdamWParams) -> Result<()> {
    state.step += 1;
    if state.var.elem_count() == 0 {
        return Ok(());
    }
    if kernels::supported(&[state.var.as_tensor(), grad, &state.exp_avg, &state.exp_avg_sq]) {
        return update_in_place(state, grad, lr, params);
    }
    let grad = grad.detach().to_dtype(state.var.dtype())?;
    let param = state.var.as_detached_tensor();
    let decayed = param.affine(1.0 - lr * params.weight_decay, 0.0)?;

    state.exp_avg = ((&state.exp_avg * params.beta1)? + (&grad * (1.0 - params.beta1))?)?;
    state.exp_avg_sq = ((&state.exp_avg_sq * params.beta2)? + (grad.sqr()? * (1.0 - params.beta2))?)?;

    let step = state.step as f64;
    let bias_correction1 = 1.0 - params.beta1.powf(step);
    let bias_correction2_sqrt = (1.0 - params.beta2.powf(step)).sqrt();
    let step_size = lr / bias_correction1;

    let denom = (state.exp_avg_sq.sqrt()? / bias_correction2_sqrt)?.affine(1.0, params.eps)?;
    let change = (state.exp_avg.div(&denom)? * step_size)?;
    state.var.set(&(decayed - change)?)?;
    Ok(())
}

/// [`update`] for f32 CPU tensors, with the moments and the parameter updated in place.
fn update_in_place(state: &mut ParamState, grad: &Tensor, lr: f64, params: &AdamWParams) -> Result<()> {
    let betas = (params.beta1, params.beta2);
    kernels::update_moments(&state.exp_avg, &state.exp_avg_sq, grad, betas, 1.0)?;

    let step = state.step as f64;
    let update = kernels::ParamUpdate {
        decay: (1.0 - lr * params.weight_decay) as f32,
        step_size: (lr / (1.0 - params.beta1.powf(step))) as f32,
        bias_correction2_sqrt: (1.0 - params.beta2.powf(step)).sqrt() as f32,
        eps: params.eps as f32,
    };
    kernels::update_param(state.var.as_tensor(), &state.exp_avg, &state.exp_avg_sq, &update)?;
    Ok(())
}

fn check_gradient_shape(state: &ParamState, grad: &Tensor) -> Result<()> {
    if grad.shape() == state.var.shape() {
        return Ok(());
    }
    Err(ModelError::InvalidArgument(format!(
        "the gradient of {} has shape {:?}, but the variable has shape {:?}",
        state.name,
        grad.dims(),
        state.var.dims()
    )))
}

/// Returns the dtype, shape and little-endian bytes of an F32 or F64 tensor.
fn tensor_bytes(tensor: &Tensor) -> Result<(safetensors::Dtype, Vec<usize>, Vec<u8>)> {
    let flat = tensor.flatten_all()?;
    let (dtype, bytes) = match tensor.dtype() {
        DType::F32 => {
            let values = flat.to_vec1::<f32>()?;
            let bytes = values.iter().flat_map(|value| value.to_le_bytes()).collect();
            (safetensors::Dtype::F32, bytes)
        }
        DType::F64 => {
            let values = flat.to_vec1::<f64>()?;
            let bytes = values.iter().flat_map(|value| value.to_le_bytes()).collect();
            (safetensors::Dtype::F64, bytes)
        }
        dtype => unreachable!("AdamW::new accepts only F32 and F64 variables, got {dtype:?}"),
    };
    Ok((dtype, tensor.dims().to_vec(), bytes))
}

/// Writes `bytes` to a temporary file next to `path`, flushes it to disk and renames it to
/// `path`. The temporary file is removed when a step fails.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = temporary_path(path)?;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&temporary);
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Returns `.<file name>.tmp.<process id>` in the folder of `path`.
fn temporary_path(path: &Path) -> Result<PathBuf> {
    let Some(file_name) = path.file_name() else {
        return Err(ModelError::InvalidArgument(format!(
            "{}: the optimizer state path must name a file",
            path.display()
        )));
    };
    let temporary_name = format!(".{}.tmp.{}", file_name.to_string_lossy(), std::process::id());
    Ok(path.with_file_name(temporary_name))
}

fn write_error(path: &Path, message: &str) -> ModelError {
    invalid_state(path, "(file)", format!("writing failed: {message}"))
}

fn invalid_state(path: &Path, tensor: &str, message: String) -> ModelError {
    ModelError::InvalidTensor {
        path: path.to_path_buf(),
        tensor: tensor.to_string(),
        message,
    }
}

fn read_metadata(path: &Path, bytes: &[u8]) -> Result<HashMap<String, String>> {
    let (_, metadata) = SafeTensors::read_metadata(bytes)
        .map_err(|e| invalid_state(path, "(file)", format!("cannot read the safetensors header: {e}")))?;
    Ok(metadata.metadata().clone().unwrap_or_default())
}

/// Parses a step count from the metadata. Errors name `__metadata__`, the header entry that
/// contains the counts.
fn metadata_count(path: &Path, metadata: &HashMap<String, String>, key: &str) -> Result<usize> {
    let Some(value) = metadata.get(key) else {
        let message = format!("missing the step count {key:?}. Was the file written by AdamW::save?");
        return Err(invalid_state(path, "__metadata__", message));
    };
    value.parse().map_err(|_| {
        let message = format!("step count {key:?} is {value:?}, not a non-negative integer");
        invalid_state(path, "__metadata__", message)
    })
}

/// Removes the tensor `name` from `tensors` and checks that its shape and dtype match `var`.
fn take_moment(path: &Path, tensors: &mut HashMap<String, Tensor>, name: &str, var: &Var) -> Result<Tensor> {
    let Some(tensor) = tensors.remove(name) else {
        return Err(invalid_state(
            path,
            name,
            "not found in the optimizer state".into(),
        ));
    };
    if tensor.shape() != var.shape() {
        let message = format!(
            "shape {:?} does not match the variable's shape {:?}",
            tensor.dims(),
            var.dims()
        );
        return Err(invalid_state(path, name, message));
    }
    if tensor.dtype() != var.dtype() {
        let message = format!(
            "dtype {:?} does not match the variable's dtype {:?}",
            tensor.dtype(),
            var.dtype()
        );
        return Err(invalid_state(path, name, message));
    }
    Ok(tensor.to_device(var.device())?)
}

/// Sums the gradients of several backward passes, for gradient accumulation.
///
/// Only the gradients of the given variables are kept, so the gradients of intermediate tensors
/// are freed after each pass. The result is a sum, so the caller scales each loss by the number
/// of passes to get the gradient of their mean.
#[derive(Default)]
pub struct GradAccumulator {
    sum: GradStore,
    passes: usize,
}

impl GradAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the gradients of `vars` from one backward pass. Variables without a gradient in
    /// `grads` are skipped.
    pub fn add(&mut self, grads: GradStore, vars: &[Var]) -> Result<()> {
        let mut grads = grads;
        for var in vars {
            let Some(grad) = grads.remove(var.as_tensor()) else {
                continue;
            };
            let grad = grad.detach();
            let total = match self.sum.remove(var.as_tensor()) {
                Some(previous) => (previous + grad)?,
                None => grad,
            };
            self.sum.insert(var.as_tensor(), total);
        }
        self.passes += 1;
        Ok(())
    }

    /// Returns the number of passes added since the last `finish`.
    pub fn passes(&self) -> usize {
        self.passes
    }

    /// Returns the summed gradients and resets the accumulator for the next optimizer step.
    pub fn finish(&mut self) -> GradStore {
        self.passes = 0;
        std::mem::take(&mut self.sum)
    }
}

/// Scales the gradients of `vars` so that their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` does, and returns the norm before clipping.
///
/// The scale factor is `max_norm / (norm + 1e-6)`, applied when it is below 1. The norm is
/// computed in f64. A NaN or infinite norm is returned as is and turns the gradients into NaN or
/// zeros, so the caller should check it before stepping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(ModelError::InvalidArgument(format!(
            "the maximum gradient norm must be a positive number, got {max_norm}"
        )));
    }
    let norm = global_norm(grads, vars)?;

    let scale = max_norm / (norm + 1e-6);
    if scale < 1.0 {
        for var in unique_vars(vars) {
            if let Some(grad) = grads.remove(var.as_tensor()) {
                grads.insert(var.as_tensor(), (grad * scale)?);
            }
        }
    }
    Ok(norm)
}

fn global_norm(grads: &GradStore, vars: &[Var]) -> Result<f64> {
    let mut squares = Vec::new();
    let mut fast_total = 0.0;
    for var in unique_vars(vars) {
        if let Some(grad) = grads.get(var.as_tensor()) {
            if kernels::supported(&[grad]) {
                fast_total += kernels::sum_of_squares(grad)?;
                continue;
            }
            squares.push(
                grad.to_dtype(DType::F64)?
                    .sqr()?
                    .sum_all()?
                    .to_device(&Device::Cpu)?,
            );
        }
    }
    if squares.is_empty() {
        return Ok(fast_total.sqrt());
    }
    let total = Tensor::stack(&squares, 0)?.sum_all()?.to_scalar::<f64>()?;
    Ok((total + fast_total).sqrt())
}

/// Returns `vars` without repeats, so a variable listed twice is counted and scaled once.
fn unique_vars(vars: &[Var]) -> impl Iterator<Item = &Var> {
    let mut seen = HashSet::new();
    vars.iter().filter(move |var| seen.insert(var.as_tensor().id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(values: &[f32]) -> Var {
        Var::from_slice(values, values.len(), &Device::Cpu).unwrap()
    }

    fn values(var: &Var) -> Vec<f32> {
        var.as_tensor().to_vec1().unwrap()
    }

    fn grads_for(pairs: &[(&Var, &[f32])]) -> GradStore {
        let mut grads = GradStore::default();
        for (var, values) in pairs {
            let grad = Tensor::from_slice(values, values.len(), &Device::Cpu).unwrap();
            grads.insert(var.as_tensor(), grad);
        }
        grads
    }

    fn assert_close(actual: &[f32], expected: &[f64], tolerance: f64) {
        assert_eq!(actual.len(), expected.len());
        for (index, (actual, expected)) in actual.iter().zip(expected).enumerate() {
            let error = (*actual as f64 - expected).abs();
            assert!(
                error <= tolerance * expected.abs().max(1.0),
                "element {index}: got {actual}, expected {expected}"
            );
        }
    }

    #[test]
    fn two_steps_match_pytorch_formulas() {
        let params = AdamWParams {
            lr: 0.1,
            weight_decay: 0.05,
            ..AdamWParams::default()
        };
        let start = [1.0f32, -2.0, 0.5];
        let gradients = [[0.1f32, -0.3, 2.0], [-0.2, 0.4, 1.0]];
        let learning_rates = [0.1, 0.05];

        let w = var(&start);
        let mut optimizer = AdamW::new(vec![("w".into(), w.clone())], params).unwrap();
        for (gradient, lr) in gradients.iter().zip(learning_rates) {
            optimizer.step(&grads_for(&[(&w, gradient)]), lr).unwrap();
        }

        // torch.optim.AdamW, single-tensor path, in f64.
        let (beta1, beta2, eps, wd) = (0.9f64, 0.999f64, 1e-8, 0.05);
        let mut expected: Vec<f64> = start.iter().map(|&x| x as f64).collect();
        let mut m = [0.0f64; 3];
        let mut v = [0.0f64; 3];
        for (t, (gradient, lr)) in gradients.iter().zip(learning_rates).enumerate() {
            let t = (t + 1) as f64;
            for i in 0..3 {
                let g = gradient[i] as f64;
                expected[i] *= 1.0 - lr * wd;
                m[i] = beta1 * m[i] + (1.0 - beta1) * g;
                v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
                let step_size = lr / (1.0 - beta1.powf(t));
                let denom = v[i].sqrt() / (1.0 - beta2.powf(t)).sqrt() + eps;
                expected[i] -= step_size * m[i] / denom;
            }
        }
        assert_close(&values(&w), &expected, 1e-6);
        assert_eq!(optimizer.steps(), 2);
    }

    #[test]
    fn zero_gradient_step_only_decays() {
        let params = AdamWParams {
            weight_decay: 0.1,
            ..AdamWParams::default()
        };
        let w = var(&[2.0, -4.0]);
        let mut optimizer = AdamW::new(vec![("w".into(), w.clone())], params).unwrap();
        optimizer.step(&grads_for(&[(&w, &[0.0, 0.0])]), 0.5).unwrap();

        // m = v = 0, so only p · (1 − 0.5 · 0.1) remains.
        assert_close(&values(&w), &[2.0 * 0.95, -4.0 * 0.95], 1e-7);
    }

    #[test]
    fn weight_decay_changes_update() {
        let run = |weight_decay: f64| {
            let params = AdamWParams {
                weight_decay,
                ..AdamWParams::default()
            };
            let w = var(&[3.0]);
            let mut optimizer = AdamW::new(vec![("w".into(), w.clone())], params).unwrap();
            optimizer.step(&grads_for(&[(&w, &[1.0])]), 0.1).unwrap();
            values(&w)[0] as f64
        };
        // The first Adam step moves by lr · m̂ / (√v̂ + ε) ≈ 0.1 for any non-zero gradient.
        assert_close(&[run(0.0) as f32], &[3.0 - 0.1], 1e-6);
        assert_close(&[run(0.2) as f32], &[3.0 * (1.0 - 0.1 * 0.2) - 0.1], 1e-6);
    }

    #[test]
    fn var_without_gradient_is_unchanged() {
        let w = var(&[1.0, 2.0]);
        let frozen = var(&[5.0]);
        let vars = vec![("w".into(), w.clone()), ("frozen".into(), frozen.clone())];
        let mut optimizer = AdamW::new(vars, AdamWParams::default()).unwrap();
        optimizer.step(&grads_for(&[(&w, &[1.0, 1.0])]), 0.1).unwrap();

        assert_eq!(values(&frozen), vec![5.0]);
        assert_ne!(values(&w), vec![1.0, 2.0]);
    }

    #[test]
    fn new_rejects_duplicates_and_invalid_params() {
        let vars = vec![("w".into(), var(&[1.0])), ("w".into(), var(&[2.0]))];
        let message = AdamW::new(vars, AdamWParams::default())
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("\"w\""), "{message}");

        let params = AdamWParams {
            beta2: 1.0,
            ..AdamWParams::default()
        };
        let message = AdamW::new(vec![], params).err().unwrap().to_string();
        assert!(message.contains("beta2"), "{message}");
    }

    /// Builds two variables with fixed values and an optimizer over them.
    fn optimizer_with(values: [&[f32]; 2]) -> (AdamW, Var, Var) {
        let a = var(values[0]);
        let b = var(values[1]);
        let vars = vec![("layer.b".into(), b.clone()), ("layer.a".into(), a.clone())];
        (AdamW::new(vars, AdamWParams::default()).unwrap(), a, b)
    }

    #[test]
    fn save_and_load_resume_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optimizer.safetensors");
        let gradients: [[&[f32]; 2]; 3] = [
            [&[0.5, -1.0], &[2.0]],
            [&[0.1, 0.3], &[-1.5]],
            [&[-0.7, 0.2], &[0.4]],
        ];

        let (mut uninterrupted, a, b) = optimizer_with([&[1.0, 2.0], &[-3.0]]);
        for gradient in &gradients[..2] {
            let grads = grads_for(&[(&a, gradient[0]), (&b, gradient[1])]);
            uninterrupted.step(&grads, 0.01).unwrap();
        }
        uninterrupted.save(&path).unwrap();

        let (mut resumed, resumed_a, resumed_b) = optimizer_with([&values(&a), &values(&b)]);
        resumed.load_state(&path).unwrap();
        assert_eq!(resumed.steps(), 2);

        let last = gradients[2];
        uninterrupted
            .step(&grads_for(&[(&a, last[0]), (&b, last[1])]), 0.01)
            .unwrap();
        resumed
            .step(&grads_for(&[(&resumed_a, last[0]), (&resumed_b, last[1])]), 0.01)
            .unwrap();

        assert_eq!(values(&resumed_a), values(&a));
        assert_eq!(values(&resumed_b), values(&b));
        assert_eq!(resumed.steps(), 3);
    }

    #[test]
    fn save_writes_named_moments_and_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optimizer.safetensors");
        let (mut optimizer, a, _) = optimizer_with([&[1.0, 2.0], &[-3.0]]);
        optimizer.step(&grads_for(&[(&a, &[1.0, 1.0])]), 0.01).unwrap();
        optimizer.save(&path).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        let metadata = read_metadata(&path, &bytes).unwrap();
        assert_eq!(metadata["step"], "1");
        assert_eq!(metadata["step.layer.a"], "1");
        assert_eq!(metadata["step.layer.b"], "0");

        let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        let expected = [
            "exp_avg.layer.a",
            "exp_avg.layer.b",
            "exp_avg_sq.layer.a",
            "exp_avg_sq.layer.b",
        ];
        assert_eq!(names, expected);
        assert_close(
            &tensors["exp_avg.layer.a"].to_vec1::<f32>().unwrap(),
            &[0.1, 0.1],
            1e-7,
        );

        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "the temporary file was not renamed");
    }

    #[test]
    fn load_rejects_wrong_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optimizer.safetensors");
        let (saved, _, _) = optimizer_with([&[1.0, 2.0], &[-3.0]]);
        saved.save(&path).unwrap();

        let (mut other, a, _) = optimizer_with([&[1.0, 2.0, 3.0], &[-3.0]]);
        let error = other.load_state(&path).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("exp_avg.layer.a"), "{message}");
        assert!(message.contains("optimizer.safetensors"), "{message}");
        assert!(message.contains("[2]"), "{message}");
        assert!(message.contains("[3]"), "{message}");

        // The failed load left the optimizer as it was.
        assert_eq!(other.steps(), 0);
        other.step(&grads_for(&[(&a, &[1.0, 1.0, 1.0])]), 0.01).unwrap();
    }

    #[test]
    fn load_rejects_missing_and_unknown_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optimizer.safetensors");
        let (saved, _, _) = optimizer_with([&[1.0, 2.0], &[-3.0]]);
        saved.save(&path).unwrap();

        let c = var(&[0.0]);
        let vars = vec![("layer.c".into(), c)];
        let mut missing = AdamW::new(vars, AdamWParams::default()).unwrap();
        let message = missing.load_state(&path).unwrap_err().to_string();
        assert!(message.contains("exp_avg.layer.c"), "{message}");
        assert!(message.contains("not found"), "{message}");

        let vars = vec![("layer.a".into(), var(&[1.0, 2.0]))];
        let mut subset = AdamW::new(vars, AdamWParams::default()).unwrap();
        let message = subset.load_state(&path).unwrap_err().to_string();
        assert!(message.contains("exp_avg.layer.b"), "{message}");
        assert!(message.contains("not a moment"), "{message}");
    }

    #[test]
    fn load_reports_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.safetensors");
        let (mut optimizer, _, _) = optimizer_with([&[1.0], &[2.0]]);
        let message = optimizer.load_state(&path).unwrap_err().to_string();
        assert!(message.contains("absent.safetensors"), "{message}");
    }

    #[test]
    fn clip_scales_large_gradients() {
        let a = var(&[0.0, 0.0]);
        let b = var(&[0.0]);
        let vars = [a.clone(), b.clone()];
        let mut grads = grads_for(&[(&a, &[3.0, 0.0]), (&b, &[4.0])]);

        let norm = clip_grad_norm(&mut grads, &vars, 1.0).unwrap();
        assert_eq!(norm, 5.0);
        let scale = 1.0 / (5.0 + 1e-6);
        let clipped_a: Vec<f32> = grads.get(a.as_tensor()).unwrap().to_vec1().unwrap();
        let clipped_b: Vec<f32> = grads.get(b.as_tensor()).unwrap().to_vec1().unwrap();
        assert_close(&clipped_a, &[3.0 * scale, 0.0], 1e-7);
        assert_close(&clipped_b, &[4.0 * scale], 1e-7);
    }

    #[test]
    fn clip_keeps_small_gradients() {
        let a = var(&[0.0, 0.0]);
        let b = var(&[0.0]);
        let vars = [a.clone(), b.clone()];
        let mut grads = grads_for(&[(&a, &[3.0, 0.0])]);

        let norm = clip_grad_norm(&mut grads, &vars, 10.0).unwrap();
        assert_eq!(norm, 3.0);
        let kept: Vec<f32> = grads.get(a.as_tensor()).unwrap().to_vec1().unwrap();
        assert_eq!(kept, vec![3.0, 0.0]);
        assert!(grads.get(b.as_tensor()).is_none());
    }

    #[test]
    fn clip_rejects_non_positive_max_norm() {
        let a = var(&[0.0]);
        let mut grads = grads_for(&[(&a, &[1.0])]);
        let vars = [a.clone()];
        let message = clip_grad_norm(&mut grads, &vars, 0.0).unwrap_err().to_string();
        assert!(message.contains("maximum gradient norm"), "{message}");
    }

    #[test]
    fn accumulation_equals_gradient_of_summed_loss() {
        let w = var(&[0.5, -1.0, 2.0]);
        let vars = [w.clone()];
        let x1 = Tensor::new(&[1.0f32, 2.0, -1.0], &Device::Cpu).unwrap();
        let x2 = Tensor::new(&[-0.5f32, 0.3, 4.0], &Device::Cpu).unwrap();
        let loss = |x: &Tensor| w.as_tensor().mul(x).unwrap().sum_all().unwrap().sqr().unwrap();

        let mut accumulator = GradAccumulator::new();
        accumulator.add(loss(&x1).backward().unwrap(), &vars).unwrap();
        accumulator.add(loss(&x2).backward().unwrap(), &vars).unwrap();
        assert_eq!(accumulator.passes(), 2);
        let accumulated = accumulator.finish();
        assert_eq!(accumulator.passes(), 0);

        let summed = (loss(&x1) + loss(&x2)).unwrap().backward().unwrap();
        let expected: Vec<f32> = summed.get(w.as_tensor()).unwrap().to_vec1().unwrap();
        let actual: Vec<f32> = accumulated.get(w.as_tensor()).unwrap().to_vec1().unwrap();
        let expected: Vec<f64> = expected.iter().map(|&x| x as f64).collect();
        assert_close(&actual, &expected, 1e-6);
    }
}
