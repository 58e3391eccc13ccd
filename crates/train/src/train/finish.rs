//! The end of a run: the final model in the run folder, the evaluation split scored by it
//! (reusing the last validation when it measured these very weights), and the plots.

use anyhow::Result;
use burn::module::Module;
use triplet_model::EmbeddingModel;

use super::epoch::{Trainer, model_bytes};
use super::validation::{Validation, evaluate, summary_line};
use crate::console::say;
use crate::files::write_atomic;
use crate::plot;
use crate::run::metrics::{EvalRecord, Record};
use triplet_metrics::Retrieval;

impl Trainer<'_> {
    /// Writes the final model, evaluates it and draws the plots; the evaluation's scores.
    pub(super) fn finish(
        &mut self,
        model: &EmbeddingModel,
        last_validation: Option<Validation>,
    ) -> Result<Option<Retrieval>> {
        let final_model = self.run.model_file();
        write_atomic(&final_model, &model_bytes(model)?)?;
        say(&format!("model saved to {}", final_model.display()));

        let data = self.data;
        let evaluated = match (&data.eval, last_validation) {
            (None, _) => None,
            // The last epoch was just validated with these very weights.
            (Some(_), Some(v)) if v.step == self.state.step => Some((v.retrieval, v.embedded)),
            (Some(eval), _) => Some(evaluate(
                &model.valid(),
                eval,
                &data.eval_transform,
                self.config,
            )?),
        };
        if evaluated.is_some() {
            crate::fault::point("eval");
        }
        if let (Some(eval), Some((r, embedded))) = (&data.eval, &evaluated) {
            self.metrics.write(&Record::Eval(EvalRecord {
                scores: r.into(),
                epoch: self.state.sampler.epoch,
                step: self.state.step,
                images: embedded.indices.len(),
                classes: eval.classes().len(),
            }))?;
            say(&format!(
                "retrieval on the evaluation split ({}: {} images, {} classes, leave-one-out): {}",
                data.eval_description,
                embedded.indices.len(),
                eval.classes().len(),
                summary_line(r),
            ));
        }
        if let Some(best) = self.state.best {
            say(&format!(
                "best checkpoint: epoch {} (step {}), MAP@R {:.4}; `triplet eval --checkpoint {}` \
                 uses it",
                best.epoch,
                best.step,
                best.map_at_r,
                self.run.path().display()
            ));
        }
        if self.config.train.plots {
            let mut written = Vec::new();
            if plot::write_curves(self.run, self.run.path())? {
                written.push("curves.png");
            }
            crate::fault::point("plots");
            if let (Some(eval), Some((_, embedded))) = (&data.eval, &evaluated) {
                let png = plot::pca_png(
                    embedded.rows.rows(),
                    &embedded.labels,
                    eval.classes(),
                    &format!(
                        "PCA of {} embeddings ({})",
                        embedded.indices.len(),
                        data.eval_description
                    ),
                    10_000,
                )?;
                write_atomic(&self.run.pca_png(), &png)?;
                written.push("embeddings_pca.png");
            }
            if !written.is_empty() {
                say(&format!(
                    "plots: {} in {}",
                    written.join(", "),
                    self.run.path().display()
                ));
            }
        }
        Ok(evaluated.map(|e| e.0))
    }
}
