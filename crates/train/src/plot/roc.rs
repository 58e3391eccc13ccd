//! A verification ROC curve: true against false accept rate, on a linear and on a logarithmic
//! FAR axis, with chosen operating points marked.

use anyhow::{Result, anyhow, ensure};
use plotters::prelude::*;

use super::{FAMILY, class_colour, render, tick};

/// A verification ROC curve: false accept rate (x) and true accept rate (y) at each threshold,
/// in ascending threshold order, starting after (0,0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RocCurve<'a> {
    /// False accept rate at each threshold: the fraction of negative pairs accepted.
    pub far: &'a [f64],
    /// True accept rate at each threshold: the fraction of positive pairs accepted.
    pub tar: &'a [f64],
    /// Area under the curve (shown as "n/a" when not a number).
    pub auc: f64,
    /// The numbers of `(positive, negative)` pairs.
    pub pairs: (usize, usize),
}

/// Width of the figure.
pub(crate) const WIDTH: u32 = 1400;
/// Height of the figure.
pub(crate) const HEIGHT: u32 = 720;
/// The log panel's FAR axis never starts above half of this, however few negative pairs.
pub(crate) const LOG_FAR_FLOOR: f64 = 1e-4;

/// Colour of the curve (`tab10` blue); marks take the next `tab10` colours.
const CURVE: RGBColor = RGBColor(31, 119, 180);

/// The log panel's FAR axis minimum: half of the smallest non-zero FAR that `negatives` pairs
/// can give (`1 / negatives`), or half of [`LOG_FAR_FLOOR`] when that is smaller.
pub(crate) fn log_far_min(negatives: usize) -> f64 {
    let smallest = if negatives == 0 {
        LOG_FAR_FLOOR
    } else {
        (1.0 / negatives as f64).max(LOG_FAR_FLOOR)
    };
    smallest / 2.0
}

/// The ROC as a 1400 × 720 PNG: two panels side by side, the curve on linear axes (with the
/// chance diagonal, dashed grey) and on a logarithmic FAR axis from half of
/// `max(1 / negatives, 1e-4)` to 1, where points of smaller FAR (such as FAR 0) are drawn on
/// the axis minimum. `marks` are operating points `(far, tar, label)`, e.g.
/// `(1e-3, 0.83, "TAR@FAR=1e-3: 0.830")`, drawn as dots on both panels and named in the log
/// panel's legend. The AUC and the pair counts are in the subtitle, the AUC also in the
/// legend. Points and marks that are not numbers are left out.
///
/// # Errors
/// If `far` and `tar` differ in length, or drawing fails.
pub fn roc_png(curve: &RocCurve<'_>, marks: &[(f64, f64, String)], title: &str) -> Result<Vec<u8>> {
    ensure!(
        curve.far.len() == curve.tar.len(),
        "ROC curve with {} false and {} true accept rates",
        curve.far.len(),
        curve.tar.len()
    );
    let points: Vec<(f64, f64)> = std::iter::once((0.0, 0.0))
        .chain(curve.far.iter().copied().zip(curve.tar.iter().copied()))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| (x.clamp(0.0, 1.0), y.clamp(0.0, 1.0)))
        .collect();
    let marks: Vec<(f64, f64, &str)> = marks
        .iter()
        .filter(|(x, y, _)| x.is_finite() && y.is_finite())
        .map(|(x, y, label)| (x.clamp(0.0, 1.0), y.clamp(0.0, 1.0), label.as_str()))
        .collect();
    let colours: Vec<RGBColor> = (0..marks.len())
        .map(|i| class_colour(i + 1, marks.len() + 1))
        .collect();
    let auc = if curve.auc.is_finite() {
        format!("AUC {:.4}", curve.auc)
    } else {
        "AUC n/a".to_string()
    };
    let (positive, negative) = curve.pairs;
    let subtitle = format!(
        "{auc} · {} positive and {} negative pairs · {} threshold{}",
        grouped(positive),
        grouped(negative),
        curve.far.len(),
        if curve.far.len() == 1 { "" } else { "s" }
    );
    let lo = log_far_min(negative);

    render(WIDTH, HEIGHT, |root| {
        let err = |e: DrawingAreaErrorKind<_>| anyhow!("{e}");
        let root = root.margin(8, 0, 0, 0);
        let root = root.titled(title, (FAMILY, 22)).map_err(err)?;
        let root = root
            .titled(
                &subtitle,
                TextStyle::from((FAMILY, 15).into_font()).color(&RGBColor(70, 70, 70)),
            )
            .map_err(err)?;
        let panels = root.split_evenly((1, 2));
        let grey = RGBColor(150, 150, 150);

        let mut chart = ChartBuilder::on(&panels[0])
            .caption("linear FAR", (FAMILY, 18))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("false accept rate")
            .y_desc("true accept rate")
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .light_line_style(BLACK.mix(0.04))
            .label_style((FAMILY, 14))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                8,
                6,
                grey.stroke_width(1),
            ))
            .map_err(err)?
            .label("chance")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey));
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                CURVE.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("ROC, {auc}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], CURVE.stroke_width(2)));
        for (&(x, y, _), &colour) in marks.iter().zip(&colours) {
            chart
                .draw_series([Circle::new((x, y), 5, colour.filled())])
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

        let on_log = |(x, y): (f64, f64)| (x.max(lo), y);
        let mut chart = ChartBuilder::on(&panels[1])
            .caption("logarithmic FAR", (FAMILY, 18))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d((lo..1.0).log_scale(), 0.0..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("false accept rate (log scale)")
            .y_desc("true accept rate")
            .x_label_formatter(&|v| power_tick(*v))
            .y_label_formatter(&tick)
            .light_line_style(BLACK.mix(0.04))
            .label_style((FAMILY, 14))
            .draw()
            .map_err(err)?;
        // On a log axis the diagonal TAR = FAR is a curve.
        let chance = (0..=100).map(|i| {
            let x = lo * (1.0 / lo).powf(f64::from(i) / 100.0);
            (x, x)
        });
        chart
            .draw_series(DashedLineSeries::new(chance, 8, 6, grey.stroke_width(1)))
            .map_err(err)?
            .label("chance")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey));
        chart
            .draw_series(LineSeries::new(
                points.iter().copied().map(on_log),
                CURVE.stroke_width(2),
            ))
            .map_err(err)?
            .label("ROC")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], CURVE.stroke_width(2)));
        for (&(x, y, label), &colour) in marks.iter().zip(&colours) {
            let (x, y) = on_log((x, y));
            // Guides from the axes to the mark.
            let guide = colour.mix(0.6).stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new([(x, 0.0), (x, y)], 4, 4, guide))
                .map_err(err)?;
            chart
                .draw_series(DashedLineSeries::new([(lo, y), (x, y)], 4, 4, guide))
                .map_err(err)?;
            chart
                .draw_series([Circle::new((x, y), 5, colour.filled())])
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
        }
        chart
            .configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

/// A log-axis tick: "1" or "1e-3" at powers of ten, "2e-3" and "5e-3" between them, and no
/// label at other multiples (plotters puts ticks at all nine when the axis spans few decades).
fn power_tick(v: f64) -> String {
    if v.is_nan() || v <= 0.0 {
        return String::new();
    }
    let exponent = (v.log10() + 1e-9).floor();
    let mantissa = v / 10f64.powf(exponent);
    match (mantissa.round() as i32, exponent as i32) {
        (m, _) if (mantissa - f64::from(m)).abs() > 1e-6 => String::new(),
        (1, 0) => "1".to_string(),
        (m @ (1 | 2 | 5), e) => format!("{m}e{e}"),
        _ => String::new(),
    }
}

/// `n` with thousands separated by commas.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png: &[u8]) -> image::RgbImage {
        image::load_from_memory(png).unwrap().to_rgb8()
    }

    fn has(img: &image::RgbImage, c: RGBColor) -> bool {
        img.pixels().any(|p| p.0 == [c.0, c.1, c.2])
    }

    #[test]
    fn draws_a_curve_with_marks() {
        // TAR = FAR^0.1 at 200 log-spaced FARs (including 0), like a decent verifier.
        let far: Vec<f64> = std::iter::once(0.0)
            .chain((0..200).map(|i| 10f64.powf(-5.0 + 5.0 * f64::from(i) / 199.0)))
            .collect();
        let tar: Vec<f64> = far.iter().map(|f| f.powf(0.1)).collect();
        let curve = RocCurve {
            far: &far,
            tar: &tar,
            auc: 0.909,
            pairs: (1_234, 56_789),
        };
        let marks = vec![
            (1e-3, 1e-3f64.powf(0.1), "TAR@FAR=1e-3: 0.501".to_string()),
            (0.0, 0.2, "at FAR 0".to_string()),
            (f64::NAN, 0.5, "not drawn".to_string()),
        ];
        let img = decode(&roc_png(&curve, &marks, "verification ROC").unwrap());
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        assert!(has(&img, CURVE));
        assert!(has(&img, class_colour(1, 4)) && has(&img, class_colour(2, 4)));
    }

    #[test]
    fn one_point_no_marks_and_a_nan_auc_draw() {
        let curve = RocCurve {
            far: &[1.0],
            tar: &[1.0],
            auc: 0.5,
            pairs: (1, 1),
        };
        let img = decode(&roc_png(&curve, &[], "one point").unwrap());
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        let curve = RocCurve {
            far: &[0.0, f64::NAN, 0.5],
            tar: &[0.0, 0.3, f64::INFINITY],
            auc: f64::NAN,
            pairs: (0, 0),
        };
        let img = decode(&roc_png(&curve, &[], "no pairs").unwrap());
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        let empty = RocCurve {
            far: &[],
            tar: &[],
            auc: f64::NAN,
            pairs: (0, 0),
        };
        assert!(roc_png(&empty, &[], "empty").is_ok());
    }

    #[test]
    fn mismatched_rates_are_an_error() {
        let curve = RocCurve {
            far: &[0.1, 1.0],
            tar: &[1.0],
            auc: 0.5,
            pairs: (1, 1),
        };
        let err = roc_png(&curve, &[], "bad").unwrap_err().to_string();
        assert!(err.contains("2 false and 1 true"), "{err}");
    }

    #[test]
    fn log_axis_and_labels() {
        // The numbers in `roc_png`'s documentation.
        assert_eq!((WIDTH, HEIGHT, LOG_FAR_FLOOR), (1400, 720, 1e-4));
        assert_eq!(log_far_min(0), 5e-5);
        assert_eq!(log_far_min(1_000_000), 5e-5);
        assert_eq!(log_far_min(100), 0.005);
        assert_eq!(log_far_min(1), 0.5);
        assert_eq!(power_tick(1.0), "1");
        assert_eq!(power_tick(1e-3), "1e-3");
        assert_eq!(power_tick(5e-4), "5e-4");
        assert_eq!(power_tick(0.2), "2e-1");
        assert_eq!(power_tick(0.3), "");
        assert_eq!(power_tick(0.0), "");
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(56_789), "56,789");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}
