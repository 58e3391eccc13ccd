//! A 2-D PCA map of embeddings, a colour per class.

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use triplet_metrics::Rows;

use super::{FAMILY, class_colour, render, span, tick};

/// The two leading principal components of the rows (power iteration with deflation on the
/// covariance, in f64) and the fraction of the variance each explains.
pub fn pca_2d(rows: Rows<'_>) -> (Vec<[f64; 2]>, [f64; 2]) {
    let (n, dim, x) = (rows.len(), rows.dim(), rows.values());
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
    embeddings: Rows<'_>,
    labels: &[usize],
    class_names: &[String],
    title: &str,
    max_points: usize,
) -> Result<Vec<u8>> {
    // Subsample first (an even stride), so PCA costs at most `max_points · dim²`.
    let stride = embeddings.len().div_ceil(max_points.max(1)).max(1);
    let kept: Vec<usize> = (0..embeddings.len()).step_by(stride).collect();
    let sample = embeddings.select(&kept);
    let labels: Vec<usize> = labels.iter().copied().step_by(stride).collect();
    let (points, explained) = pca_2d(sample.rows());
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
        let (p, explained) = pca_2d(Rows::new(&x, 3));
        assert_eq!(p.len(), 48);
        assert!(explained[0] > 0.99 && explained[1] > 0.0);
        assert!((explained[0] + explained[1] - 1.0).abs() < 1e-9);
        // PC 1 is ±(1, 1, 0)/√2: projections are (t - mean t)·√2 up to sign; mean t = -0.5.
        let r = p[0][0] / (-23.5 * 2f64.sqrt());
        assert!((r.abs() - 1.0).abs() < 1e-9, "{r}");
        assert!((p[0][1].abs() - 1.0).abs() < 1e-9);
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
        let png = pca_png(
            Rows::new(&x, 2),
            &labels,
            &["a".into(), "b".into()],
            "test",
            1000,
        )
        .unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        let has = |c: RGBColor| img.pixels().any(|p| p.0 == [c.0, c.1, c.2]);
        // Legend markers are drawn in the full class colours.
        assert!(has(class_colour(0, 2)) && has(class_colour(1, 2)));
    }
}
