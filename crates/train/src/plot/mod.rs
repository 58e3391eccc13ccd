//! PNG plots (plotters, drawn into an RGB buffer and encoded by `image`): training curves from
//! a run's `metrics.jsonl`, a 2-D PCA map of embeddings coloured by class, the retrievals of
//! chosen queries (`retrievals.png`) and the verification ROC (`roc.png`).
//!
//! Text uses the bundled DejaVu Sans (`assets/`), so plots need no system fonts.

use std::io::Cursor;
use std::sync::Once;

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
pub(crate) const FAMILY: &str = "sans-serif";

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled font parses; if not, plotters reports missing glyphs per call.
        let _ = register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws with `draw` on a white `width × height` canvas and returns the PNG bytes.
pub(crate) fn render(
    width: u32,
    height: u32,
    draw: impl FnOnce(&Area<'_>) -> Result<()>,
) -> Result<Vec<u8>> {
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
pub(crate) fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
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
pub(crate) fn tick(v: &f64) -> String {
    let v = if v.abs() < 1e-9 { 0.0 } else { *v };
    format!("{v:.2}")
}

mod curves;
mod pca;
mod retrievals;
mod roc;

pub use curves::{Curves, curves_png, write_curves};
pub use pca::{pca_2d, pca_png};
pub use retrievals::{Hit, ShownQuery, Thumb, retrievals_png};
pub use roc::{RocCurve, roc_png};
