//! Training curves from a run's `metrics.jsonl`: the loss of every step and each epoch's
//! mean, the active-triplet fraction, and validation MAP@R and P@1.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::{FAMILY, render, span};
use crate::files::write_atomic;
use crate::run::RunDir;
use crate::run::metrics::{self, Record};

/// Curves read from `metrics.jsonl`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Curves {
    /// `(step, loss)` of every step.
    pub loss: Vec<(f64, f64)>,
    /// `(step, mean loss)` at the end of each epoch.
    pub epoch_loss: Vec<(f64, f64)>,
    /// `(step, active fraction)` of every step.
    pub active: Vec<(f64, f64)>,
    /// `(epoch, MAP@R, P@1)` of each validation (and of the final evaluation).
    pub validation: Vec<(f64, f64, f64)>,
}

impl Curves {
    /// Parses the records of a `metrics.jsonl` (lines that are not records are skipped).
    pub fn parse(text: &str) -> Self {
        let mut c = Curves::default();
        let finite = |x: f64| x.is_finite().then_some(x);
        for record in metrics::parse(text) {
            match record {
                Record::Step(s) => {
                    let step = s.step as f64;
                    if let Some(l) = s.loss.and_then(finite) {
                        c.loss.push((step, l));
                    }
                    if let Some(a) = s.active_fraction.and_then(finite) {
                        c.active.push((step, a));
                    }
                }
                Record::Epoch(e) => {
                    if let Some(l) = finite(e.loss) {
                        c.epoch_loss.push((e.step as f64, l));
                    }
                }
                // The final evaluation counts as a point unless that epoch was validated.
                Record::Validation(v) => {
                    if let Some(point) = validation_point(v.epoch, &v.scores) {
                        c.validation.push(point);
                    }
                }
                Record::Eval(v) => {
                    if let Some(point) = validation_point(v.epoch, &v.scores)
                        && c.validation.last().is_none_or(|last| last.0 != point.0)
                    {
                        c.validation.push(point);
                    }
                }
            }
        }
        c
    }
}

/// `(epoch, MAP@R, P@1)`, when both scores are numbers.
fn validation_point(epoch: u64, s: &metrics::Scores) -> Option<(f64, f64, f64)> {
    let (m, p) = (s.mean_average_precision_at_r, s.precision_at_1);
    (m.is_finite() && p.is_finite()).then_some((epoch as f64, m, p))
}

/// Training curves (loss, active fraction, validation MAP@R and P@1) as a PNG.
pub fn curves_png(curves: &Curves) -> Result<Vec<u8>> {
    render(900, 1000, |root| {
        let panels = root.split_evenly((3, 1));
        let err = |e: DrawingAreaErrorKind<_>| anyhow!("{e}");

        let (x0, x1) = span(curves.loss.iter().map(|p| p.0));
        let (y0, y1) = span(curves.loss.iter().chain(&curves.epoch_loss).map(|p| p.1));
        let mut chart = ChartBuilder::on(&panels[0])
            .caption("training loss", (FAMILY, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FAMILY, 14))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(curves.loss.iter().copied(), BLUE.mix(0.35)))
            .map_err(err)?
            .label("per step")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.mix(0.35)));
        chart
            .draw_series(LineSeries::new(
                curves.epoch_loss.iter().copied(),
                RED.stroke_width(2),
            ))
            .map_err(err)?
            .label("epoch mean")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart
            .configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;

        let (x0, x1) = span(curves.active.iter().map(|p| p.0));
        let mut chart = ChartBuilder::on(&panels[1])
            .caption("active triplets (positive loss)", (FAMILY, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, 0.0..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("fraction")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FAMILY, 14))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                curves.active.iter().copied(),
                GREEN.mix(0.8),
            ))
            .map_err(err)?;

        // Epochs are whole numbers: an integer axis gives one tick per epoch (or fewer).
        let e0 = curves
            .validation
            .iter()
            .map(|v| v.0 as i64)
            .min()
            .unwrap_or(0);
        let e1 = curves
            .validation
            .iter()
            .map(|v| v.0 as i64)
            .max()
            .unwrap_or(1);
        let (e0, e1) = if e0 == e1 { (e0 - 1, e1 + 1) } else { (e0, e1) };
        let (y0, y1) = span(curves.validation.iter().flat_map(|v| [v.1, v.2]));
        let mut chart = ChartBuilder::on(&panels[2])
            .caption(
                if curves.validation.is_empty() {
                    "retrieval on the evaluation split (none run)"
                } else {
                    "retrieval on the evaluation split"
                },
                (FAMILY, 22),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(e0..e1, y0.max(0.0)..y1.min(1.0).max(y0 + 1e-3))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("MAP@R, P@1")
            .x_labels(((e1 - e0 + 1) as usize).min(12))
            .label_style((FAMILY, 14))
            .draw()
            .map_err(err)?;
        if !curves.validation.is_empty() {
            for (name, colour, pick) in [("MAP@R", RED, 1usize), ("P@1", BLUE, 2)] {
                let points: Vec<(i64, f64)> = curves
                    .validation
                    .iter()
                    .map(|v| (v.0 as i64, if pick == 1 { v.1 } else { v.2 }))
                    .collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                    .map_err(err)?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                    .map_err(err)?;
            }
            chart
                .configure_series_labels()
                .label_font((FAMILY, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(err)?;
        }
        Ok(())
    })
}

/// Writes `curves.png` from the run's `metrics.jsonl` into `dir`; false if the run has no
/// metrics.
pub fn write_curves(run: &RunDir, dir: &Path) -> Result<bool> {
    let path = run.metrics_file();
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(false);
    };
    let curves = Curves::parse(&text);
    if curves.loss.is_empty() {
        return Ok(false);
    }
    write_atomic(&dir.join("curves.png"), &curves_png(&curves)?)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_parse_the_metrics_records() {
        let text = r#"{"kind":"step","step":1,"loss":0.5,"active_fraction":0.9}
{"kind":"step","step":2,"loss":0.4,"active_fraction":0.8}
not json
{"kind":"epoch","step":2,"loss":0.45}
{"kind":"validation","epoch":1,"step":2,"precision_at_1":0.7,"mean_average_precision_at_r":0.3}
{"kind":"eval","epoch":1,"step":2,"precision_at_1":0.7,"mean_average_precision_at_r":0.3}
{"kind":"eval","epoch":3,"step":6,"precision_at_1":0.8,"mean_average_precision_at_r":0.4}"#;
        let c = Curves::parse(text);
        assert_eq!(c.loss, [(1.0, 0.5), (2.0, 0.4)]);
        assert_eq!(c.active, [(1.0, 0.9), (2.0, 0.8)]);
        assert_eq!(c.epoch_loss, [(2.0, 0.45)]);
        // The eval of a validated epoch is not repeated; the later one is a point.
        assert_eq!(c.validation, [(1.0, 0.3, 0.7), (3.0, 0.4, 0.8)]);
        let png = curves_png(&c).unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), (900, 1000));
    }
}
