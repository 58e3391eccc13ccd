//! PNG plots (plotters, drawn into an RGB buffer and encoded by `image`): training curves from
//! a run's `metrics.jsonl`, and a 2-D PCA map of embeddings coloured by class.
//!
//! Text uses the bundled DejaVu Sans (`assets/`), so plots need no system fonts.

use std::io::Cursor;
use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use serde_json::Value;

use crate::train::checkpoint::write_atomic;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled font parses; if not, plotters reports missing glyphs per call.
        let _ = register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws with `draw` on a white `width × height` canvas and returns the PNG bytes.
fn render(width: u32, height: u32, draw: impl FnOnce(&Area<'_>) -> Result<()>) -> Result<Vec<u8>> {
    register();
    let mut buffer = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        draw(&root)?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    let image = image::RgbImage::from_raw(width, height, buffer).expect("buffer is w × h × 3");
    let mut png = Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .context("encoding PNG")?;
    Ok(png.into_inner())
}

/// A colour per class: the ten of matplotlib's `tab10`, then evenly spaced hues.
pub fn class_colour(class: usize, classes: usize) -> RGBColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    if classes <= TAB10.len() {
        let (r, g, b) = TAB10[class];
        return RGBColor(r, g, b);
    }
    let hsl = HSLColor(class as f64 / classes as f64, 0.65, 0.45);
    let (r, g, b) = hsl.rgb();
    RGBColor(r, g, b)
}

/// `[min, max]` of the values, widened a little (and made non-empty).
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}

/// A tick label without a negative zero.
fn tick(v: &f64) -> String {
    let v = if v.abs() < 1e-9 { 0.0 } else { *v };
    format!("{v:.2}")
}

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
    /// Parses the records of a `metrics.jsonl` (lines that do not parse are skipped).
    pub fn parse(text: &str) -> Self {
        let mut c = Curves::default();
        for record in text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        {
            let get = |key: &str| record[key].as_f64();
            match record["kind"].as_str() {
                Some("step") => {
                    if let (Some(s), Some(l)) = (get("step"), get("loss")) {
                        c.loss.push((s, l));
                    }
                    if let (Some(s), Some(a)) = (get("step"), get("active_fraction")) {
                        c.active.push((s, a));
                    }
                }
                Some("epoch") => {
                    if let (Some(s), Some(l)) = (get("step"), get("loss")) {
                        c.epoch_loss.push((s, l));
                    }
                }
                // The final evaluation counts as a point unless that epoch was validated.
                Some(kind @ ("validation" | "eval")) => {
                    if let (Some(e), Some(m), Some(p)) = (
                        get("epoch"),
                        get("mean_average_precision_at_r"),
                        get("precision_at_1"),
                    ) && (kind == "validation" || c.validation.last().is_none_or(|v| v.0 != e))
                    {
                        c.validation.push((e, m, p));
                    }
                }
                _ => {}
            }
        }
        c
    }
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

/// The two leading principal components of `n × dim` rows (power iteration with deflation on
/// the covariance, in f64) and the fraction of the variance each explains.
pub fn pca_2d(x: &[f32], dim: usize) -> (Vec<[f64; 2]>, [f64; 2]) {
    let dim = dim.max(1);
    let n = x.len() / dim;
    if n == 0 {
        return (Vec::new(), [0.0; 2]);
    }
    let mut mean = vec![0.0f64; dim];
    for row in x.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v) / n as f64;
        }
    }
    let mut cov = vec![0.0f64; dim * dim];
    for row in x.chunks_exact(dim) {
        let c: Vec<f64> = row
            .iter()
            .zip(&mean)
            .map(|(&v, m)| f64::from(v) - m)
            .collect();
        for i in 0..dim {
            for j in i..dim {
                cov[i * dim + j] += c[i] * c[j];
            }
        }
    }
    for i in 0..dim {
        for j in 0..i {
            cov[i * dim + j] = cov[j * dim + i];
        }
    }
    let total: f64 = (0..dim).map(|i| cov[i * dim + i]).sum();
    let mut components = [vec![0.0; dim], vec![0.0; dim]];
    let mut explained = [0.0; 2];
    for (c, slot) in components.iter_mut().zip(&mut explained) {
        // A fixed, generic start vector: deterministic results.
        let mut v: Vec<f64> = (0..dim).map(|i| 1.0 + (i as f64 * 0.618).sin()).collect();
        let mut eigen = 0.0;
        for _ in 0..500 {
            let mut w: Vec<f64> = (0..dim)
                .map(|i| (0..dim).map(|j| cov[i * dim + j] * v[j]).sum())
                .collect();
            let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            w.iter_mut().for_each(|a| *a /= norm);
            let delta: f64 = w.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
            v = w;
            eigen = norm;
            if delta < 1e-12 {
                break;
            }
        }
        // Sign convention: the largest coordinate is positive.
        let big = v
            .iter()
            .copied()
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap_or(1.0);
        if big < 0.0 {
            v.iter_mut().for_each(|a| *a = -*a);
        }
        for i in 0..dim {
            for j in 0..dim {
                cov[i * dim + j] -= eigen * v[i] * v[j];
            }
        }
        *slot = if total > 0.0 { eigen / total } else { 0.0 };
        *c = v;
    }
    let projected = x
        .chunks_exact(dim)
        .map(|row| {
            let dot = |c: &[f64]| {
                row.iter()
                    .zip(&mean)
                    .zip(c)
                    .map(|((&v, m), w)| (f64::from(v) - m) * w)
                    .sum()
            };
            [dot(&components[0]), dot(&components[1])]
        })
        .collect();
    (projected, explained)
}

/// A PCA map of embeddings coloured by class, as a PNG; at most `max_points` rows (an even
/// stride through them) are analysed and drawn.
pub fn pca_png(
    embeddings: &[f32],
    dim: usize,
    labels: &[usize],
    class_names: &[String],
    title: &str,
    max_points: usize,
) -> Result<Vec<u8>> {
    // Subsample first (an even stride), so PCA costs at most `max_points · dim²`.
    let dim = dim.max(1);
    let n = embeddings.len() / dim;
    let stride = n.div_ceil(max_points.max(1)).max(1);
    let sample: Vec<f32> = embeddings
        .chunks_exact(dim)
        .step_by(stride)
        .flatten()
        .copied()
        .collect();
    let labels: Vec<usize> = labels.iter().copied().step_by(stride).collect();
    let (points, explained) = pca_2d(&sample, dim);
    render(1000, 850, |root| {
        let err = |e: DrawingAreaErrorKind<_>| anyhow!("{e}");
        let (x0, x1) = span(points.iter().map(|p| p[0]));
        let (y0, y1) = span(points.iter().map(|p| p[1]));
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(format!("PC 1 ({:.1}% of variance)", explained[0] * 100.0))
            .y_desc(format!("PC 2 ({:.1}% of variance)", explained[1] * 100.0))
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .label_style((FAMILY, 14))
            .draw()
            .map_err(err)?;
        let classes = class_names.len().max(1);
        for (class, name) in class_names.iter().enumerate() {
            let colour = class_colour(class, classes);
            let mine = points
                .iter()
                .zip(&labels)
                .filter(|(_, l)| **l == class)
                .map(|(p, _)| Circle::new((p[0], p[1]), 2, colour.mix(0.7).filled()));
            let series = chart.draw_series(mine).map_err(err)?;
            if class < 20 {
                series
                    .label(name.clone())
                    .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour.filled()));
            }
        }
        chart
            .configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

/// Writes `curves.png` from `run/metrics.jsonl` into `dir`; false if the run has no metrics.
pub fn write_curves(run: &Path, dir: &Path) -> Result<bool> {
    let path = run.join("metrics.jsonl");
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
    fn pca_finds_the_spread_axes() {
        // Points spread along (1, 1, 0) a lot and along (0, 0, 1) a little, the two
        // uncorrelated (the ±1 pattern + - - + sums to zero against any linear t).
        let mut x = Vec::new();
        for i in 0..48 {
            let t = i as f32 - 24.0;
            let s = if matches!(i % 4, 0 | 3) { 1.0 } else { -1.0 };
            x.extend([t, t, s]);
        }
        let (p, explained) = pca_2d(&x, 3);
        assert_eq!(p.len(), 48);
        assert!(explained[0] > 0.99 && explained[1] > 0.0);
        assert!((explained[0] + explained[1] - 1.0).abs() < 1e-9);
        // PC 1 is ±(1, 1, 0)/√2: projections are (t - mean t)·√2 up to sign; mean t = -0.5.
        let r = p[0][0] / (-23.5 * 2f64.sqrt());
        assert!((r.abs() - 1.0).abs() < 1e-9, "{r}");
        assert!((p[0][1].abs() - 1.0).abs() < 1e-9);
    }

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

    #[test]
    fn pca_png_colours_each_class() {
        let x: Vec<f32> = (0..40)
            .flat_map(|i| {
                let c = (i % 2) as f32 * 10.0;
                [c + (i as f32 * 0.1).sin(), c + (i as f32 * 0.3).cos()]
            })
            .collect();
        let labels: Vec<usize> = (0..40).map(|i| i % 2).collect();
        let png = pca_png(&x, 2, &labels, &["a".into(), "b".into()], "test", 1000).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        let has = |c: RGBColor| img.pixels().any(|p| p.0 == [c.0, c.1, c.2]);
        // Legend markers are drawn in the full class colours.
        assert!(has(class_colour(0, 2)) && has(class_colour(1, 2)));
    }
}
