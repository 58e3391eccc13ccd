//! The optimiser of `[optimizer]` and the learning rate of `[schedule]` at each step. The
//! schedule is a pure function of the step, so a checkpoint's step is its whole state.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};

use crate::config::{ExperimentConfig, OptimizerConfig, OptimizerKind, ScheduleKind};

/// The optimiser of `[optimizer]`.
pub fn optimizer(c: &OptimizerConfig) -> ModuleOptimizer {
    let clip = c
        .grad_clip_norm
        .map(|n| GradientClippingConfig::Norm(n as f32));
    match c.name {
        OptimizerKind::Adam => AdamConfig::new()
            .with_weight_decay(
                c.weight_decay
                    .filter(|&wd| wd > 0.0)
                    .map(|wd| WeightDecayConfig::new(wd as f32)),
            )
            .with_grad_clipping(clip)
            .init(),
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_weight_decay(c.weight_decay.unwrap_or(0.01) as f32)
            .with_grad_clipping(clip)
            .init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_weight_decay(
                c.weight_decay
                    .filter(|&wd| wd > 0.0)
                    .map(|wd| WeightDecayConfig::new(wd as f32)),
            )
            .with_momentum((c.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(c.momentum)
                    .with_dampening(0.0)
            }))
            .with_gradient_clipping(clip)
            .init(),
    }
}

/// The learning rate of step `step` (from 0) of a run of `total` steps, `per_epoch` per epoch:
/// linear warm-up, then constant, cosine or step decay.
pub fn learning_rate(config: &ExperimentConfig, step: u64, total: u64, per_epoch: u64) -> f64 {
    let s = &config.schedule;
    let peak = config.optimizer.lr;
    if step < s.warmup_steps {
        return peak * (step + 1) as f64 / s.warmup_steps as f64;
    }
    match s.name {
        ScheduleKind::Constant => peak,
        ScheduleKind::Cosine => {
            let span = total.saturating_sub(s.warmup_steps).max(1) as f64;
            let t = ((step - s.warmup_steps) as f64 / span).min(1.0);
            s.min_lr + (peak - s.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
        ScheduleKind::Step => {
            let epoch = step / per_epoch.max(1);
            peak * s.gamma.powi((epoch / s.step_epochs) as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(schedule: &str) -> ExperimentConfig {
        ExperimentConfig::from_toml(&format!("[optimizer]\nlr = 1.0\n[schedule]\n{schedule}"))
            .unwrap()
    }

    #[test]
    fn warm_up_then_cosine_reaches_the_minimum() {
        let c = config("name = \"cosine\"\nwarmup_steps = 10\nmin_lr = 0.1");
        assert!((learning_rate(&c, 0, 110, 11) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&c, 9, 110, 11) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&c, 10, 110, 11) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&c, 60, 110, 11) - 0.55).abs() < 1e-12);
        assert!((learning_rate(&c, 110, 110, 11) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn step_decay_by_epochs() {
        let c = config("name = \"step\"\nstep_epochs = 2\ngamma = 0.5");
        let lr: Vec<f64> = (0..6).map(|e| learning_rate(&c, e * 10, 60, 10)).collect();
        assert_eq!(lr, [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]);
    }
}
