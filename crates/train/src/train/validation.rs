//! Validation during training: the evaluation split embedded by the model in inference mode
//! and scored leave-one-out, the record it leaves in `metrics.jsonl`, and the best-checkpoint
//! and early-stopping bookkeeping ([`RunState::record_validation`](crate::run::state::RunState::record_validation)).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use triplet_model::EmbeddingModel;

use super::epoch::Trainer;
use crate::config::ExperimentConfig;
use crate::console::say;
use crate::data::augment::Transform;
use crate::data::source::ImageSet;
use crate::embed::{EmbedOptions, Embedded, embed, model_device};
use crate::run::metrics::{Record, ValidationRecord};
use crate::run::state::Validated;
use triplet_metrics::{Retrieval, retrieval};

/// One line of metrics.
pub fn summary_line(r: &Retrieval) -> String {
    format!(
        "P@1 {:.4}  R@2 {:.4}  R@4 {:.4}  R@8 {:.4}  R-Precision {:.4}  MAP@R {:.4}",
        r.precision_at_1, r.recall_at[1], r.recall_at[2], r.recall_at[3], r.r_precision, r.map_at_r
    )
}

/// Embeds `set` (no augmentation) and scores leave-one-out retrieval on the model's device.
pub fn evaluate(
    model: &EmbeddingModel,
    set: &Arc<ImageSet>,
    transform: &Arc<Transform>,
    config: &ExperimentConfig,
) -> Result<(Retrieval, Embedded)> {
    let embedded = embed(model, set, transform, EmbedOptions::of(config), &|line| {
        say(line)
    })?;
    let r = retrieval(
        embedded.rows.rows(),
        &embedded.labels,
        None,
        config.loss().distance,
        &model_device(model),
    )?;
    Ok((r, embedded))
}

/// A validation done: its scores and embeddings (the final evaluation reuses them when no step
/// came after).
pub(super) struct Validation {
    /// The step it was made at.
    pub step: u64,
    /// The scores.
    pub retrieval: Retrieval,
    /// The embeddings scored.
    pub embedded: Embedded,
}

impl Trainer<'_> {
    /// Validates `model` after epoch `epoch` (from 0) on `set`: records and prints the scores,
    /// and updates the best checkpoint and the patience. A split in which no image has another
    /// of its class measures nothing, and changes neither.
    pub(super) fn validate(
        &mut self,
        model: &EmbeddingModel,
        set: &Arc<ImageSet>,
        epoch: u64,
    ) -> Result<(Validation, Validated)> {
        let started = Instant::now();
        let (r, embedded) = evaluate(&model.valid(), set, &self.data.eval_transform, self.config)?;
        crate::fault::point("validation");
        let patience = self.config.train.early_stopping_patience;
        let validated = if r.queries == 0 {
            // Nothing was measured: neither a best nor a step towards early stopping.
            say(
                "warning: no validation image has another image of its class; validation \
                 measures nothing (the evaluation split needs at least 2 images per class)",
            );
            Validated {
                improved: false,
                stop: self.state.patience_spent(patience),
            }
        } else {
            self.state
                .record_validation(r.map_at_r, epoch + 1, patience)
        };
        self.metrics.write(&Record::Validation(ValidationRecord {
            scores: (&r).into(),
            epoch: epoch + 1,
            step: self.state.step,
            images: embedded.indices.len(),
            best: validated.improved,
            seconds: started.elapsed().as_secs_f64(),
        }))?;
        say(&format!(
            "validation after epoch {}: {}{}",
            epoch + 1,
            summary_line(&r),
            match (validated.improved, self.state.best) {
                (true, _) => " (best so far)".into(),
                (false, Some(b)) => format!(" (best: epoch {}, {:.4})", b.epoch, b.map_at_r),
                (false, None) => String::new(),
            }
        ));
        let validation = Validation {
            step: self.state.step,
            retrieval: r,
            embedded,
        };
        Ok((validation, validated))
    }
}
