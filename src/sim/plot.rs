//! `simulate --plot out.svg`: one panel per policy with demand, supply (instances ×
//! vCPUs) and the scale actions over time. SVG through plotters without its `ttf`
//! feature: text is SVG `<text>`, so no font libraries are needed.

use std::path::Path;

use plotters::prelude::*;

use super::simulate::Run;

const PANEL_HEIGHT: u32 = 260;
const WIDTH: u32 = 1100;

/// Draw `runs` into an SVG file at `path`.
pub fn svg(path: &Path, title: &str, runs: &[Run]) -> anyhow::Result<()> {
    let height = PANEL_HEIGHT * runs.len().max(1) as u32 + 40;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    draw(&root, title, runs).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    root.present()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    runs: &[Run],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let panels = root.split_evenly((runs.len().max(1), 1));
    let t_max = runs
        .iter()
        .flat_map(|r| r.series.last())
        .map(|p| p.t_s / 3600.0)
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let y_max = runs
        .iter()
        .flat_map(|r| r.series.iter())
        .map(|p| p.demand.max(p.supply))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.15;
    for (run, area) in runs.iter().zip(panels.iter()) {
        let m = &run.metrics;
        let caption = format!(
            "{}: under-provisioned {:.2}% of time, slack {:.1}%, {:.2} actions/h",
            run.name,
            m.under_provisioned_timeshare * 100.0,
            m.slack * 100.0,
            m.actions_per_hour
        );
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("hours")
            .y_desc("vCPUs")
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let supply: Vec<(f64, f64)> = run
            .series
            .iter()
            .map(|p| (p.t_s / 3600.0, p.supply))
            .collect();
        chart
            .draw_series(LineSeries::new(supply, BLUE.stroke_width(2)))?
            .label("supply")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
        let demand: Vec<(f64, f64)> = run
            .series
            .iter()
            .map(|p| (p.t_s / 3600.0, p.demand))
            .collect();
        chart
            .draw_series(LineSeries::new(demand, RED.mix(0.8)))?
            .label("demand")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        // Actions: up-triangles (green) at the top, down (black) at the bottom.
        let up = run.events.iter().filter(|e| e.up).map(|e| {
            TriangleMarker::new(
                (e.t_ms as f64 / 3_600_000.0, y_max * 0.96),
                5,
                GREEN.filled(),
            )
        });
        chart
            .draw_series(up)?
            .label("scale up")
            .legend(|(x, y)| TriangleMarker::new((x + 8, y), 5, GREEN.filled()));
        let down = run.events.iter().filter(|e| !e.up).map(|e| {
            Cross::new(
                (e.t_ms as f64 / 3_600_000.0, y_max * 0.03),
                4,
                BLACK.stroke_width(2),
            )
        });
        chart
            .draw_series(down)?
            .label("scale down")
            .legend(|(x, y)| Cross::new((x + 8, y), 4, BLACK.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    Ok(())
}
