//! Line plots as PNG, drawn with plotters. Text needs a TrueType font: the first of a few common
//! system fonts (DejaVu, Liberation) is loaded at run time; without one, no PNG is written and
//! the caller is told why.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Registers a system font as "sans-serif" once; an error says none was found.
fn ensure_font() -> Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let path = FONT_PATHS
            .iter()
            .find(|p| Path::new(p).is_file())
            .ok_or_else(|| format!("no TrueType font found (looked for {})", FONT_PATHS.join(", ")))?;
        let bytes: &'static [u8] = Box::leak(std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| format!("{path} is not a usable font"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// The PNG `draw` writes at `path`, or None when it cannot be drawn (no font, say), with the
/// reason told to `log`: an experiment's table and JSON do not wait on its plot.
pub fn drawn(path: std::path::PathBuf, draw: impl FnOnce(&Path) -> Result<()>, log: &mut impl FnMut(&str)) -> Option<std::path::PathBuf> {
    match draw(&path) {
        Ok(()) => Some(path),
        Err(e) => {
            log(&format!("no plot {}: {e}", path.display()));
            None
        }
    }
}

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Writes a line chart with one line (and markers) per series.
pub fn line_chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series], y_range: (f64, f64)) -> Result<()> {
    ensure_font()?;
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y_range.0..y_range.1)
        .map_err(|e| anyhow!("{e:?}"))?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style(("sans-serif", 16)).draw().map_err(|e| anyhow!("{e:?}"))?;
    let colours = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (i, s) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
            .map_err(|e| anyhow!("{e:?}"))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(|e| anyhow!("{e:?}"))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

/// A scatter plot of labelled points `(label, x, y)`, each label written beside its point.
pub fn scatter_chart(path: &Path, title: &str, x_label: &str, y_label: &str, points: &[(String, f64, f64)]) -> Result<()> {
    ensure_font()?;
    let range = |v: Vec<f64>| {
        let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        let pad = ((hi - lo) * 0.08).max(1e-3);
        (lo - pad)..(hi + pad)
    };
    let root = BitMapBackend::new(path, (900, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(range(points.iter().map(|p| p.1).collect()), range(points.iter().map(|p| p.2).collect()))
        .map_err(|e| anyhow!("{e:?}"))?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style(("sans-serif", 16)).draw().map_err(|e| anyhow!("{e:?}"))?;
    let colours = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (label, x, y)) in points.iter().enumerate() {
        let c = colours[i % colours.len()];
        chart.draw_series(std::iter::once(Circle::new((*x, *y), 5, c.filled()))).map_err(|e| anyhow!("{e:?}"))?;
        chart
            .draw_series(std::iter::once(Text::new(label.clone(), (*x, *y), ("sans-serif", 14).into_font().color(&c))))
            .map_err(|e| anyhow!("{e:?}"))?;
    }
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

/// A heatmap of `values[row][col]` (white → dark blue, scaled to the largest value), with one
/// text label per row and per column at the cell centres; rows may be shorter than the column
/// count (causal attention), and missing cells stay blank.
pub fn heatmap(path: &Path, title: &str, row_labels: &[String], col_labels: &[String], values: &[Vec<f32>]) -> Result<()> {
    ensure_font()?;
    let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e:?}", path.display());
    let (rows, cols) = (row_labels.len() as i32, col_labels.len() as i32);
    let cell = 30i32;
    let (left, top, bottom) = (130i32, 50i32, 110i32);
    let width = (left + cols * cell + 40).max(480);
    let height = top + rows * cell + bottom;
    let root = BitMapBackend::new(path, (width as u32, height as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    root.draw(&Text::new(title.to_string(), (12, 12), ("sans-serif", 20).into_font())).map_err(err)?;
    let max = values.iter().flatten().copied().fold(0f32, f32::max).max(1e-6);
    let short = |s: &String| -> String {
        let t: String = s.chars().map(|c| if c.is_control() { '·' } else { c }).take(12).collect();
        if t.trim().is_empty() {
            "␣".to_string()
        } else {
            t
        }
    };
    let label = ("sans-serif", 14).into_font();
    for (i, row) in values.iter().enumerate() {
        let y = top + i as i32 * cell;
        for (j, &v) in row.iter().enumerate() {
            let x = left + j as i32 * cell;
            let a = (v / max).clamp(0.0, 1.0) as f64;
            let colour = RGBColor((255.0 * (1.0 - a * 0.85)) as u8, (255.0 * (1.0 - a * 0.7)) as u8, (255.0 * (1.0 - a * 0.3)) as u8);
            root.draw(&Rectangle::new([(x, y), (x + cell - 1, y + cell - 1)], colour.filled())).map_err(err)?;
        }
        let text = short(&row_labels[i]);
        let (tw, _) = root.estimate_text_size(&text, &TextStyle::from(label.clone())).map_err(err)?;
        root.draw(&Text::new(text, (left - 8 - tw as i32, y + cell / 2 - 7), label.clone())).map_err(err)?;
    }
    let rotated = ("sans-serif", 14).into_font().transform(FontTransform::Rotate90);
    for (j, l) in col_labels.iter().enumerate() {
        let x = left + j as i32 * cell + cell / 2 + 7;
        root.draw(&Text::new(short(l), (x, top + rows * cell + 6), rotated.clone())).map_err(err)?;
    }
    root.draw(&Text::new(
        "rows: generated token; columns: earlier tokens it attended to".to_string(),
        (12, height - 20),
        ("sans-serif", 13).into_font(),
    ))
    .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RGB pixel at (x, y) of a PNG.
    fn pixel(path: &Path, x: u32, y: u32) -> (u32, u32, [u8; 3]) {
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        let channels = info.color_type.samples();
        let at = (y * info.width + x) as usize * channels;
        (info.width, info.height, [buf[at], buf[at + 1], buf[at + 2]])
    }

    #[test]
    fn heatmap_cells_shade_by_value_and_missing_cells_stay_blank() {
        if ensure_font().is_err() {
            // Debian's fonts-dejavu-core is on the CI image; elsewhere the plot is skipped too.
            eprintln!("SKIPPED: no TrueType font");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.png");
        let labels = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
        // Row 1 is shorter than the columns (causal attention): its other cells stay blank.
        heatmap(&path, "test", &labels(2), &labels(3), &[vec![1.0, 0.0, 0.5], vec![0.25]]).unwrap();
        // Cells are 30 px from (130, 50); sample each cell's centre.
        let centre = |row: u32, col: u32| pixel(&path, 130 + col * 30 + 15, 50 + row * 30 + 15);
        let (w, h, top) = centre(0, 0);
        assert_eq!((w, h), (480, 50 + 2 * 30 + 110), "width has a 480 px floor; height fits the rows");
        // The largest value: 255·(1 − 0.85), 255·(1 − 0.7), 255·(1 − 0.3).
        assert_eq!(top, [38, 76, 178]);
        assert_eq!(centre(0, 1).2, [255, 255, 255], "zero is white");
        // A quarter of the maximum: 255·(1 − a·0.85) etc. with a = 0.25, truncated.
        assert_eq!(centre(1, 0).2, [200, 210, 235]);
        assert_eq!(centre(1, 2).2, [255, 255, 255], "a missing cell is blank");
    }

    #[test]
    fn line_chart_writes_a_png_of_its_size() {
        if ensure_font().is_err() {
            eprintln!("SKIPPED: no TrueType font");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.png");
        let series = [Series { name: "a".into(), points: vec![(0.0, 10.0), (1.0, 90.0)] }];
        line_chart(&path, "t", "x", "y", &series, (0.0, 100.0)).unwrap();
        let (w, h, corner) = pixel(&path, 2, 2);
        assert_eq!((w, h, corner), (900, 560, [255, 255, 255]));
    }
}
