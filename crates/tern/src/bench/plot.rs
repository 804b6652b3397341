//! SVG plots of a run: send->deliver latency over time (mean and max per
//! second) and the latency distribution (percentile curve).

use super::report::Report;
use anyhow::anyhow;
use plotters::prelude::*;
use std::path::Path;

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

pub fn latency_over_time(path: &Path, r: &Report) -> anyhow::Result<()> {
    let secs = &r.deliver.secs;
    let mean: Vec<(f64, f64)> = secs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.count > 0)
        .map(|(i, s)| (i as f64, s.sum_us as f64 / s.count as f64 / 1000.0))
        .collect();
    let max: Vec<(f64, f64)> = secs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.count > 0)
        .map(|(i, s)| (i as f64, s.max_us as f64 / 1000.0))
        .collect();
    let top = max.iter().map(|p| p.1).fold(0.1, f64::max) * 1.1;
    let right = secs.len().max(2) as f64;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: send->deliver latency over time", r.scenario),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..right, 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("ms")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(max, &RED))
        .map_err(err)?
        .label("max")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .draw_series(LineSeries::new(mean, &BLUE))
        .map_err(err)?
        .label("mean")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

pub fn latency_distribution(path: &Path, r: &Report) -> anyhow::Result<()> {
    // x: "nines" scale, -log10(1 - q), so p90 = 1, p99 = 2, p99.9 = 3.
    let h = r.deliver.hist();
    let qs: Vec<f64> = (0..=400)
        .map(|i| 1.0 - 10f64.powf(-(i as f64) / 100.0))
        .collect();
    let pts: Vec<(f64, f64)> = qs
        .iter()
        .map(|q| {
            let q = q.min(0.99999);
            (-(1.0 - q).log10(), h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect();
    let top = (h.max() as f64 / 1000.0).max(0.1) * 1.1;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: send->deliver latency distribution", r.scenario),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..5f64, 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile (1 = p90, 2 = p99, 3 = p99.9, 4 = p99.99)")
        .y_desc("ms")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(pts, &BLUE))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
