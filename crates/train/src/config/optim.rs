//! `[optimizer]` and `[schedule]`: the optimiser and its learning rate over the run.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Optimisers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam (L2 weight decay added to the gradient).
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
    /// SGD with momentum.
    Sgd,
}

/// `[optimizer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Default: `adam`.
    pub name: OptimizerKind,
    /// Peak learning rate. Default: 1e-3.
    pub lr: f64,
    /// Weight decay. Default: 0 for `adam` and `sgd`, 0.01 for `adamw` (PyTorch's defaults).
    pub weight_decay: Option<f64>,
    /// SGD momentum (0 for none). Default: 0.9.
    pub momentum: f64,
    /// Clip the gradient's global norm to this value. Default: none.
    pub grad_clip_norm: Option<f64>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            name: OptimizerKind::Adam,
            lr: 1e-3,
            weight_decay: None,
            momentum: 0.9,
            grad_clip_norm: None,
        }
    }
}

/// Learning-rate schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// The peak rate throughout.
    Constant,
    /// Cosine decay from the peak to `min_lr` over the run.
    Cosine,
    /// Multiply by `gamma` every `step_epochs` epochs.
    Step,
}

/// `[schedule]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Default: `constant`.
    pub name: ScheduleKind,
    /// Linear warm-up from 0 over this many steps. Default: 0.
    pub warmup_steps: u64,
    /// Final rate of `cosine`. Default: 0.
    pub min_lr: f64,
    /// Period of `step`, in epochs. Default: 10.
    pub step_epochs: u64,
    /// Factor of `step`. Default: 0.1.
    pub gamma: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            name: ScheduleKind::Constant,
            warmup_steps: 0,
            min_lr: 0.0,
            step_epochs: 10,
            gamma: 0.1,
        }
    }
}

impl OptimizerConfig {
    /// Checks `[optimizer]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem| Err(ConfigError::value(field, problem));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("optimizer.lr", format!("must be > 0, got {}", self.lr));
        }
        if let Some(wd) = self.weight_decay
            && !(wd.is_finite() && wd >= 0.0)
        {
            return bad("optimizer.weight_decay", format!("must be >= 0, got {wd}"));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(
                "optimizer.momentum",
                format!("must be in [0, 1), got {}", self.momentum),
            );
        }
        if let Some(c) = self.grad_clip_norm
            && !(c.is_finite() && c > 0.0)
        {
            return bad("optimizer.grad_clip_norm", format!("must be > 0, got {c}"));
        }
        Ok(())
    }
}

impl ScheduleConfig {
    /// Checks `[schedule]` for a peak learning rate `lr`.
    pub fn validate(&self, lr: f64) -> Result<(), ConfigError> {
        let bad = |field, problem| Err(ConfigError::value(field, problem));
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= lr) {
            return bad(
                "schedule.min_lr",
                format!("must be in [0, optimizer.lr], got {}", self.min_lr),
            );
        }
        if self.step_epochs == 0 {
            return bad("schedule.step_epochs", "must be at least 1, got 0".into());
        }
        if !(self.gamma.is_finite() && self.gamma > 0.0 && self.gamma <= 1.0) {
            return bad(
                "schedule.gamma",
                format!("must be in (0, 1], got {}", self.gamma),
            );
        }
        Ok(())
    }
}
