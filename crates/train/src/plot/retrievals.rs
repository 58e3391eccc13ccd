//! A retrieval gallery: each query image beside the references retrieved for it, framed green
//! (same class) or red (another class), with their distances and labels.

use anyhow::{Result, anyhow, bail, ensure};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{FAMILY, render};

/// An image to draw: `channels × height × width` values in [0, 1] (channels 1 or 3), as
/// `ImageSet::load_native` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumb {
    /// The values, channel-major (`c · height · width + y · width + x`); others are clamped into
    /// [0, 1] (NaN reads as 0).
    pub pixels: Vec<f32>,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// `[height, width]`.
    pub size: [usize; 2],
}

/// One retrieved reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The reference image.
    pub image: Thumb,
    /// Whether it is of the query's class (green frame) or not (red).
    pub relevant: bool,
    /// Its distance to the query, shown under it with three decimals.
    pub distance: f32,
    /// Shown under the distance (e.g. its class name); shortened with "…" to fit its column.
    pub label: String,
}

/// One row of the figure.
#[derive(Debug, Clone, PartialEq)]
pub struct ShownQuery {
    /// The query image.
    pub image: Thumb,
    /// Shown under the query (e.g. its class name).
    pub label: String,
    /// Shown above the row, e.g. "query 17 · class 3 · AP 0.42 (worst)".
    pub caption: String,
    /// The retrieved references, nearest first.
    pub hits: Vec<Hit>,
}

/// Side of the square cell each image is scaled into (keeping its aspect ratio, letterboxed
/// in white).
pub(crate) const CELL: u32 = 96;
/// Thickness of the frame around each cell.
pub(crate) const FRAME: u32 = 4;
/// A framed cell: the square tile of each image.
pub(crate) const TILE: u32 = CELL + 2 * FRAME;
/// Space between the hits' tiles.
pub(crate) const PAD: u32 = 10;
/// Space between the query's tile and the first hit (a grey rule runs down its middle).
pub(crate) const GAP: u32 = 36;
/// Left and right margin of the figure.
pub(crate) const MARGIN: u32 = 16;
/// Height of the band on top with the title and the colour key.
pub(crate) const TITLE_H: u32 = 60;
/// Height of the caption line above each row's tiles.
pub(crate) const CAPTION_H: u32 = 22;
/// Height of the text under each tile (distance, then label).
pub(crate) const LABEL_H: u32 = 38;
/// Space under each row.
pub(crate) const ROW_GAP: u32 = 8;
/// Height of one row: caption, tiles, text, space.
pub(crate) const ROW_H: u32 = CAPTION_H + TILE + LABEL_H + ROW_GAP;
/// The figure is at least this wide (room for the title and captions).
pub(crate) const MIN_WIDTH: u32 = 600;
/// Rows beyond this many are not drawn (the figure stays under 3.5k pixels tall).
pub(crate) const MAX_ROWS: usize = 20;
/// Hits beyond this many per row are not drawn.
pub(crate) const MAX_HITS: usize = 10;
/// Frame of a relevant hit (Okabe–Ito bluish green).
pub(crate) const RELEVANT: RGBColor = RGBColor(0, 158, 115);
/// Frame of an irrelevant hit (Paul Tol's vibrant red: redder than Okabe–Ito vermillion, and
/// still apart from [`RELEVANT`] in lightness for red–green colour blindness).
pub(crate) const IRRELEVANT: RGBColor = RGBColor(204, 51, 17);
/// Frame of the query.
pub(crate) const QUERY: RGBColor = RGBColor(128, 128, 128);

/// The figure's `(width, height)` for `rows` rows of at most `hits` hits (both already capped
/// at [`MAX_ROWS`] and [`MAX_HITS`]).
pub(crate) fn figure_size(rows: usize, hits: usize) -> (u32, u32) {
    let hits_w = if hits == 0 {
        0
    } else {
        GAP + hits as u32 * TILE + (hits as u32 - 1) * PAD
    };
    let width = (MARGIN + TILE + hits_w + MARGIN).max(MIN_WIDTH);
    (width, TITLE_H + rows as u32 * ROW_H)
}

/// The top-left pixel of the tile (frame included) of `row` at `column`: column 0 is the
/// query, column `1 + j` its hit `j`.
pub(crate) fn tile_origin(row: usize, column: usize) -> (u32, u32) {
    let x = if column == 0 {
        MARGIN
    } else {
        MARGIN + TILE + GAP + (column as u32 - 1) * (TILE + PAD)
    };
    (x, TITLE_H + row as u32 * ROW_H + CAPTION_H)
}

/// The figure as PNG bytes: one row per query: the query image (grey frame, caption above e.g.
/// "query 17 · class 3 · AP 0.42 (worst)"), then its hits left to right, each in a thick frame,
/// green (relevant: same class) or red, with its distance ("0.532", after ✓ or ✗ for readers
/// who cannot tell the colours apart) and label under it.
///
/// Every image is scaled into a 96-pixel square (keeping its aspect ratio, white around it),
/// so the size depends only on the number of rows and the most hits of any row: 114 px per
/// hit by 172 px per row, at least 600 px wide. At most 20 rows of 10 hits are drawn, the
/// rest left out.
///
/// # Errors
/// If `rows` is empty (there is nothing to show), if an image's values do not match its
/// `channels × height × width`, or if its channels are not 1 or 3.
pub fn retrievals_png(rows: &[ShownQuery], title: &str) -> Result<Vec<u8>> {
    ensure!(
        !rows.is_empty(),
        "no queries to show in the retrieval figure"
    );
    let rows = &rows[..rows.len().min(MAX_ROWS)];
    // Scale every image first: bad input is reported before anything is drawn.
    let mut scaled = Vec::with_capacity(rows.len());
    for (r, row) in rows.iter().enumerate() {
        let query = scale(&row.image).map_err(|e| anyhow!("query of row {r}: {e}"))?;
        let hits = row
            .hits
            .iter()
            .take(MAX_HITS)
            .enumerate()
            .map(|(j, hit)| scale(&hit.image).map_err(|e| anyhow!("hit {j} of row {r}: {e}")))
            .collect::<Result<Vec<_>>>()?;
        scaled.push((query, hits));
    }
    let most = scaled.iter().map(|(_, hits)| hits.len()).max().unwrap_or(0);
    let (width, height) = figure_size(rows.len(), most);
    render(width, height, |root| {
        let err = |e: DrawingAreaErrorKind<_>| anyhow!("{e}");
        let font = |size: u32| TextStyle::from((FAMILY, size).into_font());
        let centre = Pos::new(HPos::Center, VPos::Top);
        let left = Pos::new(HPos::Left, VPos::Top);

        let text_w = width - 2 * MARGIN;
        let style = font(22).pos(centre);
        let fitted = fit(root, title, &style, text_w)?;
        root.draw_text(&fitted, &style, (width as i32 / 2, 8))
            .map_err(err)?;
        let style = font(13).color(&RGBColor(90, 90, 90)).pos(centre);
        let key = "hits nearest first · green ✓: same class as the query · red ✗: another \
                   class · number: distance";
        let fitted = fit(root, key, &style, text_w)?;
        root.draw_text(&fitted, &style, (width as i32 / 2, 36))
            .map_err(err)?;
        if most > 0 {
            let x = (MARGIN + TILE + GAP / 2) as i32;
            root.draw(&PathElement::new(
                [(x, TITLE_H as i32), (x, (height - ROW_GAP) as i32)],
                RGBColor(200, 200, 200).stroke_width(2),
            ))
            .map_err(err)?;
        }

        for (r, (row, (query, hits))) in rows.iter().zip(&scaled).enumerate() {
            let (x, y) = tile_origin(r, 0);
            let style = font(14).pos(left);
            let fitted = fit(root, &row.caption, &style, text_w)?;
            root.draw_text(&fitted, &style, (x as i32, (y - CAPTION_H + 3) as i32))
                .map_err(err)?;
            draw_tile(root, (x, y), query, QUERY)?;
            let style = font(12).color(&RGBColor(60, 60, 60)).pos(centre);
            let fitted = fit(root, &row.label, &style, TILE + GAP - 4)?;
            let cx = (x + TILE / 2) as i32;
            root.draw_text(&fitted, &style, (cx, (y + TILE + 4) as i32))
                .map_err(err)?;

            for (j, (hit, image)) in row.hits.iter().zip(hits).enumerate() {
                let (x, y) = tile_origin(r, 1 + j);
                let colour = if hit.relevant { RELEVANT } else { IRRELEVANT };
                draw_tile(root, (x, y), image, colour)?;
                let cx = (x + TILE / 2) as i32;
                let sign = if hit.relevant { '✓' } else { '✗' };
                let style = font(13).color(&colour).pos(centre);
                let text = format!("{sign} {:.3}", hit.distance);
                root.draw_text(&text, &style, (cx, (y + TILE + 3) as i32))
                    .map_err(err)?;
                let style = font(12).color(&RGBColor(60, 60, 60)).pos(centre);
                let fitted = fit(root, &hit.label, &style, TILE + PAD - 2)?;
                root.draw_text(&fitted, &style, (cx, (y + TILE + 20) as i32))
                    .map_err(err)?;
            }
        }
        Ok(())
    })
}

/// An image scaled into the cell: `width × height` RGB pixels, row-major.
struct Scaled {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

/// Scales `thumb` to fit a [`CELL`] square, keeping its aspect ratio: each output pixel is the
/// area-weighted mean of the input pixels it covers (a box filter, so large photos do not
/// alias and small images keep sharp edges).
fn scale(thumb: &Thumb) -> Result<Scaled> {
    let [h, w] = thumb.size;
    let c = thumb.channels;
    if c != 1 && c != 3 {
        bail!("images have 1 or 3 channels, not {c}");
    }
    ensure!(
        c.checked_mul(h).and_then(|n| n.checked_mul(w)) == Some(thumb.pixels.len()),
        "{} values for a {c} × {h} × {w} image",
        thumb.pixels.len()
    );
    if h == 0 || w == 0 {
        return Ok(Scaled {
            width: 0,
            height: 0,
            rgb: Vec::new(),
        });
    }
    let factor = f64::from(CELL) / h.max(w) as f64;
    let out_w = ((w as f64 * factor).round() as usize).clamp(1, CELL as usize);
    let out_h = ((h as f64 * factor).round() as usize).clamp(1, CELL as usize);
    let xs = weights(w, out_w);
    let ys = weights(h, out_h);
    let plane = h * w;
    let mut rgb = Vec::with_capacity(out_w * out_h);
    for wy in &ys {
        for wx in &xs {
            let mut sum = [0f32; 3];
            for &(iy, fy) in wy {
                for &(ix, fx) in wx {
                    let f = fy * fx;
                    for (ch, s) in sum.iter_mut().enumerate().take(c) {
                        let v = thumb.pixels[ch * plane + iy * w + ix];
                        *s += f * if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
                    }
                }
            }
            let byte = |v: f32| (v * 255.0).round().clamp(0.0, 255.0) as u8;
            rgb.push(if c == 1 {
                [byte(sum[0]); 3]
            } else {
                sum.map(byte)
            });
        }
    }
    Ok(Scaled {
        width: out_w as u32,
        height: out_h as u32,
        rgb,
    })
}

/// For each of `outputs` pixels along an axis of `inputs` pixels: the input pixels it covers
/// and their weights (summing to 1).
fn weights(inputs: usize, outputs: usize) -> Vec<Vec<(usize, f32)>> {
    let step = inputs as f64 / outputs as f64;
    (0..outputs)
        .map(|o| {
            let (a, b) = (o as f64 * step, (o + 1) as f64 * step);
            let first = a.floor() as usize;
            let last = (b.ceil() as usize).min(inputs);
            (first..last)
                .filter_map(|i| {
                    let cover = b.min(i as f64 + 1.0) - a.max(i as f64);
                    (cover > 1e-9).then_some((i, (cover / step) as f32))
                })
                .collect()
        })
        .collect()
}

/// Draws a tile at `origin`: a frame of `colour`, and inside it a white cell with the image
/// centred.
fn draw_tile(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    origin: (u32, u32),
    image: &Scaled,
    colour: RGBColor,
) -> Result<()> {
    let err = |e: DrawingAreaErrorKind<_>| anyhow!("{e}");
    let (x, y) = (origin.0 as i32, origin.1 as i32);
    let (tile, frame, cell) = (TILE as i32, FRAME as i32, CELL as i32);
    root.draw(&Rectangle::new(
        [(x, y), (x + tile, y + tile)],
        colour.filled(),
    ))
    .map_err(err)?;
    root.draw(&Rectangle::new(
        [(x + frame, y + frame), (x + frame + cell, y + frame + cell)],
        WHITE.filled(),
    ))
    .map_err(err)?;
    let left = x + frame + (CELL - image.width) as i32 / 2;
    let top = y + frame + (CELL - image.height) as i32 / 2;
    for (i, &[r, g, b]) in image.rgb.iter().enumerate() {
        let (px, py) = (
            (i as u32 % image.width) as i32,
            (i as u32 / image.width) as i32,
        );
        root.draw_pixel((left + px, top + py), &RGBColor(r, g, b))
            .map_err(err)?;
    }
    Ok(())
}

/// `text`, shortened with "…" until it is at most `max_width` pixels wide in `style`.
fn fit(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    text: &str,
    style: &TextStyle<'_>,
    max_width: u32,
) -> Result<String> {
    let width = |s: &str| {
        root.estimate_text_size(s, style)
            .map(|(w, _)| w)
            .map_err(|e| anyhow!("{e}"))
    };
    if width(text)? <= max_width {
        return Ok(text.to_string());
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let shortened: String = chars.iter().collect::<String>().trim_end().to_string() + "…";
        if width(&shortened)? <= max_width {
            return Ok(shortened);
        }
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(value: f32, channels: usize, size: [usize; 2]) -> Thumb {
        Thumb {
            pixels: vec![value; channels * size[0] * size[1]],
            channels,
            size,
        }
    }

    fn hit(relevant: bool, image: Thumb) -> Hit {
        Hit {
            image,
            relevant,
            distance: 0.532,
            label: "a rather long class name that must be shortened".into(),
        }
    }

    fn decode(png: &[u8]) -> image::RgbImage {
        image::load_from_memory(png).unwrap().to_rgb8()
    }

    fn at(img: &image::RgbImage, (x, y): (u32, u32)) -> [u8; 3] {
        img.get_pixel(x, y).0
    }

    fn rgb(c: RGBColor) -> [u8; 3] {
        [c.0, c.1, c.2]
    }

    fn rows() -> Vec<ShownQuery> {
        vec![
            ShownQuery {
                // A large white photo (3 channels) as the query.
                image: plain(1.0, 3, [224, 224]),
                label: "class 3".into(),
                caption: "query 17 · class 3 · AP 0.42 (worst)".into(),
                hits: vec![
                    hit(true, plain(0.0, 1, [28, 28])),
                    hit(false, plain(0.5, 3, [224, 224])),
                    hit(true, plain(0.0, 1, [10, 20])),
                ],
            },
            ShownQuery {
                // A small black grey-scale query.
                image: plain(0.0, 1, [28, 28]),
                label: "class 0".into(),
                caption: "query 4 · class 0 · AP 1.00 (best)".into(),
                hits: vec![hit(false, plain(1.0, 1, [28, 28]))],
            },
        ]
    }

    #[test]
    fn documented_layout() {
        // The numbers in `retrievals_png`'s documentation.
        assert_eq!((CELL, TILE + PAD, ROW_H, MIN_WIDTH), (96, 114, 172, 600));
        assert_eq!((MAX_ROWS, MAX_HITS), (20, 10));
    }

    #[test]
    fn size_follows_rows_and_hits() {
        let img = decode(&retrievals_png(&rows(), "retrievals").unwrap());
        assert_eq!(img.dimensions(), figure_size(2, 3));
        let hits = 3;
        let width = 2 * MARGIN + TILE + GAP + hits * TILE + (hits - 1) * PAD;
        assert_eq!(
            img.dimensions(),
            (width.max(MIN_WIDTH), TITLE_H + 2 * ROW_H)
        );
        // Ten hits, more rows than drawn: capped.
        let wide = ShownQuery {
            hits: (0..12)
                .map(|i| hit(i % 2 == 0, plain(0.3, 1, [28, 28])))
                .collect(),
            ..rows()[1].clone()
        };
        let many = vec![wide; MAX_ROWS + 3];
        let img = decode(&retrievals_png(&many, "many").unwrap());
        assert_eq!(img.dimensions(), figure_size(MAX_ROWS, MAX_HITS));
        assert!(img.width() > MIN_WIDTH);
    }

    #[test]
    fn frames_are_green_or_red_and_images_fill_their_cells() {
        let img = decode(&retrievals_png(&rows(), "retrievals").unwrap());
        let inset = |(x, y): (u32, u32), dx: u32, dy: u32| (x + dx, y + dy);
        // Every frame pixel, corners and edges, is the frame colour.
        for (row, column, colour) in [
            (0, 0, QUERY),
            (0, 1, RELEVANT),
            (0, 2, IRRELEVANT),
            (0, 3, RELEVANT),
            (1, 0, QUERY),
            (1, 1, IRRELEVANT),
        ] {
            let o = tile_origin(row, column);
            for (dx, dy) in [
                (0, 0),
                (FRAME - 1, FRAME - 1),
                (TILE - 1, TILE - 1),
                (TILE / 2, 1),
                (1, TILE / 2),
            ] {
                assert_eq!(at(&img, inset(o, dx, dy)), rgb(colour), "{row} {column}");
            }
            // Outside the tile is the white background.
            assert_eq!(at(&img, inset(o, TILE, TILE / 2)), [255; 3]);
            assert_eq!(at(&img, (o.0 - 1, o.1 + TILE / 2)), [255; 3]);
        }
        let first_cell = |row, column| inset(tile_origin(row, column), FRAME, FRAME);
        // A white 3-channel photo fills its cell with white, a black 1-channel image with black.
        for (dx, dy) in [(0, 0), (CELL / 2, CELL / 2), (CELL - 1, CELL - 1)] {
            assert_eq!(at(&img, inset(first_cell(0, 0), dx, dy)), [255; 3]);
            assert_eq!(at(&img, inset(first_cell(0, 1), dx, dy)), [0; 3]);
            assert_eq!(at(&img, inset(first_cell(1, 0), dx, dy)), [0; 3]);
            assert_eq!(at(&img, inset(first_cell(0, 2), dx, dy)), [128; 3]);
        }
        // A 10 × 20 image is letterboxed: 48 rows of it in the middle, white above and below.
        let cell = first_cell(0, 3);
        assert_eq!(at(&img, inset(cell, CELL / 2, 5)), [255; 3]);
        assert_eq!(at(&img, inset(cell, CELL / 2, CELL / 2)), [0; 3]);
        assert_eq!(at(&img, inset(cell, 0, CELL / 4)), [0; 3]);
        assert_eq!(at(&img, inset(cell, CELL / 2, CELL - 5)), [255; 3]);
    }

    #[test]
    fn colours_keep_their_channels() {
        let mut red = plain(0.0, 3, [5, 7]);
        red.pixels[..35].fill(1.0);
        let row = ShownQuery {
            image: red,
            label: String::new(),
            caption: String::new(),
            hits: Vec::new(),
        };
        let img = decode(&retrievals_png(&[row], "").unwrap());
        assert_eq!(img.dimensions(), (MIN_WIDTH, TITLE_H + ROW_H));
        let (x, y) = tile_origin(0, 0);
        assert_eq!(at(&img, (x + TILE / 2, y + TILE / 2)), [255, 0, 0]);
    }

    #[test]
    fn scaling_averages_large_images() {
        // Alternate black and white columns average to mid-grey at half the size.
        let mut stripes = plain(0.0, 1, [192, 192]);
        for (i, v) in stripes.pixels.iter_mut().enumerate() {
            *v = (i % 2) as f32;
        }
        let s = scale(&stripes).unwrap();
        assert_eq!((s.width, s.height), (CELL, CELL));
        assert!(s.rgb.iter().all(|p| *p == [128; 3]));
        // Upscaling keeps a single pixel's value; zero-sized images are empty cells.
        let s = scale(&plain(0.25, 3, [1, 1])).unwrap();
        assert!(s.rgb.iter().all(|p| *p == [64; 3]) && s.rgb.len() == (CELL * CELL) as usize);
        assert!(scale(&plain(0.0, 1, [0, 4])).unwrap().rgb.is_empty());
    }

    #[test]
    fn bad_input_is_an_error() {
        let err = retrievals_png(&[], "none").unwrap_err();
        assert!(err.to_string().contains("no queries"), "{err}");
        let mut bad = rows();
        bad[1].hits[0].image.pixels.pop();
        let err = retrievals_png(&bad, "bad").unwrap_err().to_string();
        assert!(
            err.contains("hit 0 of row 1") && err.contains("783 values"),
            "{err}"
        );
        let mut bad = rows();
        bad[0].image = plain(0.0, 2, [4, 4]);
        let err = retrievals_png(&bad, "bad").unwrap_err().to_string();
        assert!(
            err.contains("query of row 0") && err.contains("channels"),
            "{err}"
        );
    }
}
