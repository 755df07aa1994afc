//! PNG plots drawn with `plotters`: the reliability diagram (accuracy per confidence bin against
//! the diagonal, with counts) and ROC curves. Text uses the embedded DejaVu Sans font.
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

/// Draws into an RGB buffer with `draw`, then writes the PNG.
fn render(
    path: &Path,
    draw: impl FnOnce(&mut DrawingArea<BitMapBackend, plotters::coord::Shift>) -> crate::Result<()>,
) -> crate::Result<()> {
    register_font();
    let mut buf = vec![255u8; (W * H * 3) as usize];
    {
        let mut root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        draw(&mut root)?;
        root.present().map_err(|e| anyhow!("plot: {e}"))?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create folder", parent.display()))?;
    }
    let img = image::RgbImage::from_raw(W, H, buf).expect("buffer of the right size");
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
