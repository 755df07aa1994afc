//! PNG plots drawn with `plotters`: the reliability diagram (accuracy per confidence bin against
//! the diagonal, with counts), ROC curves, seed 004's band plots, pairs of 2-D density heatmaps
//! and scatter plots of 2-D samples.
//! Text uses the embedded DejaVu Sans font.
use super::calibration::Calibration;
use anyhow::{anyhow, Context};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

const W: u32 = 800;
const H: u32 = 640;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).ok();
    });
}

/// Draws into an RGB buffer of W x H with `draw`, then writes the PNG.
fn render(
    path: &Path,
    draw: impl FnOnce(&mut DrawingArea<BitMapBackend, plotters::coord::Shift>) -> crate::Result<()>,
) -> crate::Result<()> {
    render_sized(path, (W, H), draw)
}

/// Draws into an RGB buffer of the given size with `draw`, then writes the PNG.
fn render_sized(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&mut DrawingArea<BitMapBackend, plotters::coord::Shift>) -> crate::Result<()>,
) -> crate::Result<()> {
    register_font();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let mut root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        draw(&mut root)?;
        root.present().map_err(|e| anyhow!("plot: {e}"))?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create folder", parent.display()))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).expect("buffer of the right size");
    img.save(path).with_context(|| format!("{}: cannot write PNG", path.display()))
}

type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A titled chart with labelled axes over the given ranges, its mesh drawn without minor lines.
fn frame<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> crate::Result<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(|e| anyhow!("plot: {e}"))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .light_line_style(TRANSPARENT)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow!("plot: {e}"))?;
    Ok(chart)
}

/// Draws the legend of the labelled series at `position`.
fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition) -> crate::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("plot: {e}"))
}

/// The reliability diagram of a calibration: one bar per bin at its accuracy, the diagonal of
/// perfect calibration, the gap to each bin's mean confidence, and the count above each bar.
pub fn reliability_diagram(cal: &Calibration, title: &str, path: &Path) -> crate::Result<()> {
    render(path, |root| {
        let caption = format!(
            "{title}: ECE {:.2}%, MCE {:.2}%, accuracy {:.2}%",
            100.0 * cal.ece,
            100.0 * cal.mce,
            100.0 * cal.accuracy
        );
        let mut chart = frame(root, &caption, ("confidence (max p(y|x))", "accuracy"), 0.0..1.0, 0.0..1.08)?;
        let bars = cal.bins.iter().filter_map(|b| b.accuracy.map(|a| (b, a)));
        chart
            .draw_series(bars.clone().map(|(b, a)| Rectangle::new([(b.lo, 0.0), (b.hi, a)], BLUE.mix(0.6).filled())))
            .map_err(|e| anyhow!("plot: {e}"))?
            .label("accuracy in bin")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], BLUE.mix(0.6).filled()));
        chart
            .draw_series(bars.clone().map(|(b, a)| {
                let c = b.confidence.unwrap_or(a);
                Rectangle::new([(b.lo, a.min(c)), (b.hi, a.max(c))], RED.mix(0.25).filled())
            }))
            .map_err(|e| anyhow!("plot: {e}"))?
            .label("gap to mean confidence")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], RED.mix(0.25).filled()));
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.stroke_width(2)))
            .map_err(|e| anyhow!("plot: {e}"))?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLACK.stroke_width(2)));
        chart
            .draw_series(bars.map(|(b, a)| {
                Text::new(
                    format!("{}", b.count),
                    ((b.lo + b.hi) / 2.0 - 0.012, (a + 0.05).min(1.06)),
                    ("sans-serif", 11),
                )
            }))
            .map_err(|e| anyhow!("plot: {e}"))?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    })
}

/// A labelled ROC curve: (label, (FPR, TPR) points, AUROC).
pub type RocCurve = (String, Vec<(f64, f64)>, f64);

/// ROC curves, one per (label, points, AUROC).
pub fn roc_plot(curves: &[RocCurve], title: &str, path: &Path) -> crate::Result<()> {
    render(path, |root| {
        let mut chart = frame(
            root,
            title,
            ("false-positive rate (OOD accepted)", "true-positive rate (in-distribution accepted)"),
            0.0..1.0,
            0.0..1.0,
        )?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.4).stroke_width(1)))
            .map_err(|e| anyhow!("plot: {e}"))?;
        for (i, (label, pts, auroc)) in curves.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
                .map_err(|e| anyhow!("plot: {e}"))?
                .label(format!("{label} (AUROC {auroc:.3})"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], colour.stroke_width(2)));
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}

/// A band plot like seed 004's figures 1-2: the range of `lo..hi` shaded green, `mean` in blue,
/// `truth` in red, over `x`; the y range is clipped to `y_range`.
pub fn band_plot(
    x: &[f64],
    band: (&[f64], &[f64], &[f64]),
    truth: &[f64],
    y_range: (f64, f64),
    title: &str,
    path: &Path,
) -> crate::Result<()> {
    let (lo, mean, hi) = band;
    let clip = |v: f64| v.clamp(y_range.0, y_range.1);
    render(path, |root| {
        let mut chart =
            frame(root, title, ("theta", "negative log-likelihood"), x[0]..x[x.len() - 1], y_range.0..y_range.1)?;
        let upper = x.iter().zip(hi).map(|(&a, &b)| (a, clip(b)));
        let lower = x.iter().zip(lo).rev().map(|(&a, &b)| (a, clip(b)));
        chart
            .draw_series(std::iter::once(Polygon::new(
                upper.chain(lower).collect::<Vec<_>>(),
                GREEN.mix(0.35).filled(),
            )))
            .map_err(|e| anyhow!("plot: {e}"))?
            .label("range of J_BL over runs")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], GREEN.mix(0.35).filled()));
        chart
            .draw_series(LineSeries::new(x.iter().zip(mean).map(|(&a, &b)| (a, clip(b))), BLUE.stroke_width(2)))
            .map_err(|e| anyhow!("plot: {e}"))?
            .label("mean of J_BL")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLUE.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(x.iter().zip(truth).map(|(&a, &b)| (a, clip(b))), RED.stroke_width(2)))
            .map_err(|e| anyhow!("plot: {e}"))?
            .label("true NLL J(theta)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], RED.stroke_width(2)));
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

/// A colour for `t` in [0, 1]: dark blue-violet through teal and green to yellow, linear between
/// five anchors (perceptually ordered, readable in grey).
fn heat_colour(t: f64) -> RGBColor {
    const ANCHORS: [(f64, f64, f64); 5] =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let x = t.clamp(0.0, 1.0) * (ANCHORS.len() - 1) as f64;
    let i = (x.floor() as usize).min(ANCHORS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (ANCHORS[i], ANCHORS[i + 1]);
    let mix = |u: f64, v: f64| (u + (v - u) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Densities exp(log p) of an n x n grid (laid out as `eval::logz::Grid::points`) averaged over
/// k x k blocks, k the smallest divisor of n that leaves at most 200 blocks a side.
fn block_density(log_p: &[f64], n: usize) -> (Vec<f64>, usize) {
    let k = (n.div_ceil(200)..=n).find(|k| n.is_multiple_of(*k)).unwrap_or(n);
    let m = n / k;
    let mut out = vec![0.0; m * m];
    for i in 0..n {
        for j in 0..n {
            out[(i / k) * m + j / k] += log_p[i * n + j].exp();
        }
    }
    let area = (k * k) as f64;
    out.iter_mut().for_each(|v| *v /= area);
    (out, m)
}

/// The true and the learnt 2-D densities side by side, heatmaps of p on the same grid and the same
/// linear colour scale (0 to the larger maximum), from per-cell log-densities laid out as
/// `eval::logz::Grid::points`.
pub fn density_pair(
    truth: &[f64],
    model: &[f64],
    grid: crate::eval::logz::Grid,
    title: &str,
    path: &Path,
) -> crate::Result<()> {
    let n = grid.n as usize;
    if truth.len() != n * n || model.len() != n * n {
        anyhow::bail!("density_pair: {} and {} values for a grid of {n} x {n}", truth.len(), model.len());
    }
    let (t, m) = (block_density(truth, n), block_density(model, n));
    let blocks = t.1;
    let vmax = t.0.iter().chain(&m.0).copied().filter(|v| v.is_finite()).fold(0.0, f64::max).max(1e-12);
    let side = (grid.hi - grid.lo) / blocks as f64;
    render_sized(path, (1200, 640), |root| {
        let root = root
            .titled(&format!("{title} (colour: p from 0 to {vmax:.3})"), ("sans-serif", 20))
            .map_err(|e| anyhow!("plot: {e}"))?;
        let panels = root.split_evenly((1, 2));
        for (area, (values, label)) in panels.iter().zip([(&t.0, "true density"), (&m.0, "learnt density")]) {
            let mut chart = frame(area, label, ("x1", "x2"), grid.lo..grid.hi, grid.lo..grid.hi)?;
            chart
                .draw_series((0..blocks * blocks).map(|c| {
                    let (i, j) = (c / blocks, c % blocks);
                    let (x0, y0) = (grid.lo + i as f64 * side, grid.lo + j as f64 * side);
                    let v = values[c];
                    let colour = if v.is_finite() { heat_colour(v / vmax) } else { RGBColor(255, 0, 0) };
                    Rectangle::new([(x0, y0), (x0 + side, y0 + side)], colour.filled())
                }))
                .map_err(|e| anyhow!("plot: {e}"))?;
        }
        Ok(())
    })
}

/// A scatter plot of 2-D points on a square of equal axes: [-half, half]^2, widened to take in
/// every finite point (non-finite points are left out and counted in the title). With `classes`
/// (one per point) each class gets its colour and a legend entry.
pub fn scatter_plot(
    points: &[[f64; 2]],
    classes: Option<&[i64]>,
    half: f64,
    title: &str,
    path: &Path,
) -> crate::Result<()> {
    if classes.is_some_and(|c| c.len() != points.len()) {
        anyhow::bail!("scatter_plot: {} classes for {} points", classes.map_or(0, <[i64]>::len), points.len());
    }
    let finite = |p: &[f64; 2]| p[0].is_finite() && p[1].is_finite();
    let dropped = points.iter().filter(|p| !finite(p)).count();
    let extent = points.iter().filter(|p| finite(p)).fold(half, |m, p| m.max(p[0].abs()).max(p[1].abs()));
    let lim = extent * 1.02;
    let mut caption = title.to_string();
    if half < extent {
        caption += &format!("; square: [-{half:.2}, {half:.2}]");
    }
    if dropped > 0 {
        caption += &format!(" ({dropped} non-finite left out)");
    }
    render_sized(path, (720, 720), |root| {
        let mut chart = frame(root, &caption, ("x1", "x2"), -lim..lim, -lim..lim)?;
        if half < extent {
            // The box the chains started in, when some points left it.
            let corners = [(-half, -half), (half, -half), (half, half), (-half, half), (-half, -half)];
            chart.draw_series(LineSeries::new(corners, BLACK.mix(0.4))).map_err(|e| anyhow!("plot: {e}"))?;
        }
        let radius = if points.len() > 2000 { 1 } else { 2 };
        match classes {
            None => {
                let style = BLUE.mix(0.5).filled();
                chart
                    .draw_series(points.iter().filter(|p| finite(p)).map(|p| Circle::new((p[0], p[1]), radius, style)))
                    .map_err(|e| anyhow!("plot: {e}"))?;
            }
            Some(classes) => {
                let mut labels: Vec<i64> = classes.to_vec();
                labels.sort_unstable();
                labels.dedup();
                for (i, &k) in labels.iter().enumerate() {
                    let colour = Palette99::pick(i).to_rgba();
                    let style = colour.mix(0.6).filled();
                    let of_k = points.iter().zip(classes).filter(|(p, &c)| c == k && finite(p));
                    chart
                        .draw_series(of_k.map(|(p, _)| Circle::new((p[0], p[1]), radius, style)))
                        .map_err(|e| anyhow!("plot: {e}"))?
                        .label(format!("class {k}"))
                        .legend(move |(x, y)| Circle::new((x + 7, y), 4, colour.filled()));
                }
                legend(&mut chart, SeriesLabelPosition::UpperRight)?;
            }
        }
        Ok(())
    })
}
