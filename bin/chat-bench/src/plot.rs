//! `--plot out.svg`: the latency distributions of a report as percentile curves.
//!
//! The x axis is the percentile on the usual HdrHistogram scale, `-log10(1 - q)`, so that
//! 90 %, 99 %, 99.9 % and 99.99 % are equally spaced and the tail, where servers differ, gets
//! most of the width; the y axis is the latency in milliseconds.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use plotters::prelude::*;

use crate::stats::Latency;

/// Distinct colours that read on white (matplotlib's tab10).
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// The tail is cut at 99.999 %: beyond that an hdrhistogram curve is a single point.
const MAX_NINES: f64 = 5.0;

/// `q` (0..=1) to the x coordinate: 0.9 → 1, 0.99 → 2, ...
pub fn nines(quantile: f64) -> f64 {
    let rest = (1.0 - quantile).max(10f64.powf(-MAX_NINES));
    -rest.log10()
}

/// The axis label at `x` nines: 1 → "90%", 3 → "99.9%".
pub fn percentile_label(x: f64) -> String {
    let percent = (1.0 - 10f64.powf(-x)) * 100.0;
    let decimals = (x.round() as usize).saturating_sub(2);
    format!("{percent:.decimals$}%")
}

pub fn write_svg(path: &Path, title: &str, series: &[(String, Latency)]) -> Result<()> {
    if series.is_empty() {
        bail!("no latency was measured, nothing to plot");
    }
    let curves: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, latency)| {
            let points = latency.quantile_curve().into_iter().map(|(q, ms)| (nines(q), ms)).collect();
            (name.as_str(), points)
        })
        .collect();
    let max_ms = curves.iter().flat_map(|(_, points)| points.iter().map(|p| p.1)).fold(0.0_f64, f64::max);
    let max_x = curves.iter().flat_map(|(_, points)| points.iter().map(|p| p.0)).fold(1.0_f64, f64::max).ceil();

    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .margin_right(48)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x, 0.0..(max_ms * 1.1).max(0.001))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(max_x as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()?;
    for (index, (name, points)) in curves.into_iter().enumerate() {
        let color = COLORS[index % COLORS.len()].to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_spread_the_tail_evenly() {
        assert!((nines(0.0) - 0.0).abs() < 1e-9);
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert!((nines(1.0) - MAX_NINES).abs() < 1e-9);
    }

    #[test]
    fn labels_read_as_percentiles() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(4.0), "99.99%");
    }

    #[test]
    fn an_svg_with_every_series_is_written() {
        let mut fast = Latency::new();
        let mut slow = Latency::new();
        for us in 1..=2000 {
            fast.record_us(us);
            slow.record_us(us * 3);
        }
        let path = std::env::temp_dir().join(format!("chat-bench-plot-{}.svg", std::process::id()));
        write_svg(&path, "fanout latency", &[("server".into(), fast), ("baseline".into(), slow)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("fanout latency"));
        assert!(svg.contains("server") && svg.contains("baseline"));
        assert!(svg.contains("99%"));
    }

    #[test]
    fn nothing_to_plot_is_an_error() {
        assert!(write_svg(Path::new("/nonexistent/x.svg"), "t", &[]).is_err());
    }
}
