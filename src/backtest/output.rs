//! A backtest's reports for people and programs: a table on the terminal,
//! JSON or CSV by the file's extension, and an SVG chart of kills,
//! precision and recall against the threshold.

use std::io::Write;
use std::path::Path;

use plotters::prelude::*;

use super::SetReport;

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// The reports as a table, one row per set in the order given.
pub fn table(reports: &[SetReport], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>4} {:>9} {:>4} {:>7} {:>9} {:>8} {:>9} {:>8} {:>7} {:>8} {:>8} {:>9} {:>7} {:>11} {:>6}",
        "rank",
        "threshold",
        "min",
        "timeout",
        "sessions",
        "killed",
        "timed_out",
        "stopped",
        "open",
        "p50_kill",
        "p90_kill",
        "precision",
        "recall",
        "views_saved",
        "score"
    )?;
    for (i, r) in reports.iter().enumerate() {
        writeln!(
            out,
            "{:>4} {:>9.2} {:>4} {:>7} {:>9} {:>8} {:>9} {:>8} {:>7} {:>8} {:>8} {:>9} {:>7} {:>11} {:>6.3}",
            i + 1,
            r.kill_threshold,
            r.min_interactions,
            r.timeout_minutes,
            r.sessions,
            r.killed,
            r.timed_out,
            r.stopped,
            r.open,
            opt(r.kill_p50_s, 0) + "s",
            opt(r.kill_p90_s, 0) + "s",
            opt(r.precision, 3),
            opt(r.recall, 3),
            r.views_saved,
            r.score
        )?;
    }
    Ok(())
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The file could not be written.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The extension names no format.
    #[error("{path}: {what} by extension: use {expected}")]
    Extension {
        /// The file.
        path: String,
        /// What the file is for.
        what: &'static str,
        /// The extensions understood.
        expected: &'static str,
    },
}

fn write_error(path: &Path) -> impl Fn(String) -> OutputError + '_ {
    move |reason| OutputError::Write {
        path: path.display().to_string(),
        reason,
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Writes the reports to `path`: a JSON array (`.json`) or CSV (`.csv`).
pub fn save(reports: &[SetReport], path: &Path) -> Result<(), OutputError> {
    let error = write_error(path);
    match extension(path).as_str() {
        "json" => {
            let text = serde_json::to_string_pretty(reports).map_err(|e| error(e.to_string()))?;
            std::fs::write(path, text + "\n").map_err(|e| error(e.to_string()))
        }
        "csv" => {
            let mut writer = csv::Writer::from_path(path).map_err(|e| error(e.to_string()))?;
            for report in reports {
                writer.serialize(report).map_err(|e| error(e.to_string()))?;
            }
            writer.flush().map_err(|e| error(e.to_string()))
        }
        _ => Err(OutputError::Extension {
            path: path.display().to_string(),
            what: "the output format is chosen",
            expected: ".json or .csv",
        }),
    }
}

/// Draws kills (top) and precision and recall (bottom) against the
/// threshold, one line per (minimum, window) pair, as SVG.
pub fn plot(reports: &[SetReport], path: &Path) -> Result<(), OutputError> {
    if extension(path) != "svg" {
        return Err(OutputError::Extension {
            path: path.display().to_string(),
            what: "the chart is drawn",
            expected: ".svg",
        });
    }
    let error = write_error(path);
    let mut series: Vec<((u32, u32), Vec<&SetReport>)> = Vec::new();
    for r in reports {
        let key = (r.min_interactions, r.timeout_minutes);
        match series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rows)) => rows.push(r),
            None => series.push((key, vec![r])),
        }
    }
    for (_, rows) in &mut series {
        rows.sort_by(|a, b| a.kill_threshold.total_cmp(&b.kill_threshold));
    }
    let (low, high) = reports.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| {
        (lo.min(r.kill_threshold), hi.max(r.kill_threshold))
    });
    let (low, high) = if low < high {
        (low, high)
    } else {
        (low - 0.05, low + 0.05)
    };
    let most_kills = reports.iter().map(|r| r.killed).max().unwrap_or(0).max(1) as f64;
    let root = SVGBackend::new(path, (900, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| error(e.to_string()))?;
    let (top, bottom) = root.split_vertically(400);
    let mut kills = ChartBuilder::on(&top)
        .caption("Sessions killed", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(low..high, 0.0..most_kills * 1.1)
        .map_err(|e| error(e.to_string()))?;
    kills
        .configure_mesh()
        .x_desc("kill threshold")
        .y_desc("killed")
        .draw()
        .map_err(|e| error(e.to_string()))?;
    let mut quality = ChartBuilder::on(&bottom)
        .caption("Precision (solid) and recall (dashed)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(low..high, 0.0..1.05)
        .map_err(|e| error(e.to_string()))?;
    quality
        .configure_mesh()
        .x_desc("kill threshold")
        .y_desc("share")
        .draw()
        .map_err(|e| error(e.to_string()))?;
    for (i, ((min, timeout), rows)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let label = format!("min {min}, {timeout} min");
        kills
            .draw_series(LineSeries::new(
                rows.iter().map(|r| (r.kill_threshold, r.killed as f64)),
                color.stroke_width(2),
            ))
            .map_err(|e| error(e.to_string()))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        kills
            .draw_series(
                rows.iter()
                    .map(|r| Circle::new((r.kill_threshold, r.killed as f64), 3, color.filled())),
            )
            .map_err(|e| error(e.to_string()))?;
        quality
            .draw_series(LineSeries::new(
                rows.iter()
                    .filter_map(|r| r.precision.map(|p| (r.kill_threshold, p))),
                color.stroke_width(2),
            ))
            .map_err(|e| error(e.to_string()))?;
        quality
            .draw_series(DashedLineSeries::new(
                rows.iter()
                    .filter_map(|r| r.recall.map(|p| (r.kill_threshold, p))),
                6,
                4,
                color.stroke_width(2),
            ))
            .map_err(|e| error(e.to_string()))?;
    }
    kills
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| error(e.to_string()))?;
    root.present().map_err(|e| error(e.to_string()))
}
