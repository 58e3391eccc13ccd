//! Stage 6 of `triplet eval`: the figures. `retrievals.png` (`--show N`), `roc.png` (with
//! verification, `--show` or `--plot`), `embeddings_pca.png` and `curves.png` (`--plot`).

use anyhow::Result;
use triplet_metrics::verification::FAR_TARGETS;
use triplet_metrics::{SplitMix64, nearest};

use super::plan::EvalPlan;
use super::score::{EvalEmbeddings, Scored, Side};
use crate::config::toml_name;
use crate::console::say;
use crate::data::source::ImageSet;
use crate::files::write_atomic;
use crate::plot::{self, Hit, RocCurve, ShownQuery, Thumb, retrievals_png, roc_png};

/// Neighbours shown per query in `retrievals.png`.
pub const SHOWN_HITS: usize = 8;

/// Stage 6: draws the figures the options ask for into the plan's output folder and names them.
pub fn plot(plan: &EvalPlan, e: &EvalEmbeddings, s: &Scored) -> Result<()> {
    let o = &plan.options;
    let out = &plan.out;
    let mut written = Vec::new();
    if let Some(n) = o.show {
        let shown = choose_shown(&s.per_query_ap, n, o.seed);
        if shown.is_empty() {
            say("note: --show has no query with a relevant reference to show");
        } else {
            let png = show_retrievals(plan, e, &shown, &s.per_query_ap)?;
            write_atomic(&out.join("retrievals.png"), &png)?;
            written.push("retrievals.png");
        }
    }
    if (o.show.is_some() || o.plot)
        && let (Some(v), Some((roc, _))) = (&s.report.verification, &s.roc)
    {
        let marks: Vec<(f64, f64, String)> = FAR_TARGETS
            .iter()
            .map(|&far| {
                let (tar, _) = roc.tar_at_far(far);
                (far, tar, format!("TAR@FAR={far:.0e}: {tar:.3}"))
            })
            .collect();
        let png = roc_png(
            &RocCurve {
                far: &roc.far,
                tar: &roc.tar,
                auc: v.auc,
                pairs: (v.positive_pairs, v.negative_pairs),
            },
            &marks,
            &format!(
                "Verification ROC, {} ({} distance)",
                plan.trained.which,
                toml_name(&plan.trained.config.loss.distance)
            ),
        )?;
        write_atomic(&out.join("roc.png"), &png)?;
        written.push("roc.png");
    }
    if o.plot {
        let q = &e.queries;
        let png = plot::pca_png(
            q.embedded.rows.rows(),
            &q.labels,
            q.set.classes(),
            &format!("PCA of {} query embeddings", q.embedded.indices.len()),
            10_000,
        )?;
        write_atomic(&out.join("embeddings_pca.png"), &png)?;
        written.push("embeddings_pca.png");
        if let Some(run) = &plan.trained.run
            && plot::write_curves(run, out)?
        {
            written.push("curves.png");
        }
    }
    if !written.is_empty() {
        say(&format!(
            "plots: {} in {}",
            written.join(", "),
            out.display()
        ));
    }
    Ok(())
}

/// The queries to show: the worst and the best by average precision (lowest index on ties),
/// then others drawn with `seed`, `n` in all (fewer when fewer have a relevant reference),
/// with a note for each.
pub fn choose_shown(ap: &[Option<f64>], n: usize, seed: u64) -> Vec<(usize, &'static str)> {
    let counted: Vec<(usize, f64)> = ap
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.map(|a| (i, a)))
        .collect();
    if n == 0 || counted.is_empty() {
        return Vec::new();
    }
    let worst = counted
        .iter()
        .copied()
        .reduce(|w, c| if c.1 < w.1 { c } else { w })
        .expect("not empty")
        .0;
    let best = counted
        .iter()
        .copied()
        .reduce(|b, c| if c.1 > b.1 { c } else { b })
        .expect("not empty")
        .0;
    let mut chosen = vec![(worst, "worst")];
    if n > 1 && best != worst {
        chosen.push((best, "best"));
    }
    let mut others: Vec<usize> = counted
        .iter()
        .map(|c| c.0)
        .filter(|&i| i != worst && i != best)
        .collect();
    SplitMix64::new(seed).shuffle(&mut others);
    let take = n.saturating_sub(chosen.len()).min(others.len());
    let mut drawn: Vec<usize> = others[..take].to_vec();
    drawn.sort_unstable();
    // Worst first, the drawn ones in index order, the best last.
    let mut out = vec![chosen[0]];
    out.extend(drawn.into_iter().map(|i| (i, "")));
    out.extend(chosen.get(1).copied());
    out
}

/// An image of a set as a thumbnail (a grey square when it cannot be read again).
fn thumb(set: &ImageSet, i: usize, channels: usize) -> Thumb {
    match set.load_native(i, channels) {
        Ok((pixels, size)) => Thumb {
            pixels,
            channels,
            size,
        },
        Err(_) => Thumb {
            pixels: vec![0.5; channels * 8 * 8],
            channels,
            size: [8, 8],
        },
    }
}

/// Draws `retrievals.png` for the chosen queries: their nearest references, the query itself
/// left out in leave-one-out mode.
fn show_retrievals(
    plan: &EvalPlan,
    e: &EvalEmbeddings,
    shown: &[(usize, &'static str)],
    ap: &[Option<f64>],
) -> Result<Vec<u8>> {
    let q = &e.queries;
    let refs = e.ranked_against();
    let leave_one_out = e.references.is_none();
    let channels = plan.trained.transform.channels;
    let indices: Vec<usize> = shown.iter().map(|&(i, _)| i).collect();
    let rows = q.embedded.rows.rows().select(&indices);
    let extra = usize::from(leave_one_out);
    let found = nearest(
        rows.rows(),
        refs.embedded.rows.rows(),
        SHOWN_HITS + extra,
        plan.trained.config.loss().distance,
        &plan.device,
    )?;
    let class = |side: &Side, row: usize| side.set.classes()[side.embedded.labels[row]].clone();
    let figure: Vec<_> = shown
        .iter()
        .zip(found)
        .map(|(&(i, note), mut hits)| {
            if leave_one_out {
                // The query itself, else (a duplicate ranked before it) the last one.
                let own = hits.iter().position(|h| h.0 == i).unwrap_or(hits.len() - 1);
                hits.remove(own);
            }
            hits.truncate(SHOWN_HITS);
            let caption = format!(
                "query {i} · class {} · AP {:.2}{}",
                class(q, i),
                ap[i].unwrap_or(f64::NAN),
                if note.is_empty() {
                    String::new()
                } else {
                    format!(" ({note})")
                }
            );
            let hits = hits
                .into_iter()
                .map(|(j, d)| Hit {
                    image: thumb(&refs.set, refs.embedded.indices[j], channels),
                    relevant: refs.labels[j] == q.labels[i],
                    distance: d as f32,
                    label: class(refs, j),
                })
                .collect();
            ShownQuery {
                image: thumb(&q.set, q.embedded.indices[i], channels),
                label: class(q, i),
                caption,
                hits,
            }
        })
        .collect();
    retrievals_png(
        &figure,
        &format!(
            "Nearest {} of {} queries ({})",
            SHOWN_HITS,
            shown.len(),
            if leave_one_out {
                "leave-one-out"
            } else {
                "against the references"
            }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_queries_are_worst_drawn_and_best() {
        let ap = [Some(0.5), None, Some(0.1), Some(0.9), Some(0.3), Some(0.7)];
        let shown = choose_shown(&ap, 4, 0);
        assert_eq!(shown.len(), 4);
        assert_eq!(shown[0], (2, "worst"));
        assert_eq!(shown[3], (3, "best"));
        assert!(
            shown[1..3]
                .iter()
                .all(|&(i, note)| note.is_empty() && i != 1)
        );
        assert_eq!(shown, choose_shown(&ap, 4, 0));
        assert_eq!(choose_shown(&ap, 1, 0), [(2, "worst")]);
        assert_eq!(choose_shown(&ap, 99, 0).len(), 5);
    }
}
