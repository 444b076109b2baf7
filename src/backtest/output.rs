//! A backtest's reports for people and programs: a table on the terminal,
//! JSON or CSV by the file's extension, and an SVG chart: precision against
//! recall, views saved, time to kill and kills per set, the live and the
//! best set marked.

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

/// Okabe and Ito's palette, told apart with the common colour-vision
/// deficiencies (black is kept for the marks).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
];

/// An axis value without trailing zeros: 700000, 0.35, 1.
fn trim(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The sets of one (minimum, window) pair, by threshold.
type Series<'a> = Vec<((u32, u32), Vec<&'a SetReport>)>;

fn series(reports: &[SetReport]) -> Series<'_> {
    let mut series: Series<'_> = Vec::new();
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
    series.sort_by_key(|(key, _)| *key);
    series
}

/// Whether `r` is the set `params` names.
fn is(r: &SetReport, params: Option<(f64, u32, u32)>) -> bool {
    params.is_some_and(|(t, m, w)| {
        r.kill_threshold == t && r.min_interactions == m && r.timeout_minutes == w
    })
}

/// Draws four panels, one line per (minimum, window) pair with its colour:
/// precision against recall, views saved, the median time to kill and the
/// kills against the threshold. The live set (`live`: threshold, minimum,
/// window) is ringed and the best-scored set starred wherever they are
/// drawn. The legend has a strip of its own below the panels.
pub fn plot(
    reports: &[SetReport],
    live: Option<(f64, u32, u32)>,
    path: &Path,
) -> Result<(), OutputError> {
    if extension(path) != "svg" {
        return Err(OutputError::Extension {
            path: path.display().to_string(),
            what: "the chart is drawn",
            expected: ".svg",
        });
    }
    let error = write_error(path);
    let err = |e: &dyn std::fmt::Display| error(e.to_string());
    let series = series(reports);
    let best = reports
        .iter()
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .map(|r| (r.kill_threshold, r.min_interactions, r.timeout_minutes));
    let (low, high) = reports.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| {
        (lo.min(r.kill_threshold), hi.max(r.kill_threshold))
    });
    let (low, high) = if low < high {
        (low, high)
    } else {
        (low - 0.05, low + 0.05)
    };
    let top = |f: &dyn Fn(&SetReport) -> Option<f64>| {
        reports.iter().filter_map(f).fold(0.0f64, f64::max).max(1.0) * 1.1
    };
    let root = SVGBackend::new(path, (1100, 860)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (panels, legend) = root.split_vertically(800);
    let areas = panels.split_evenly((2, 2));
    let text = ("sans-serif", 14);
    // One panel: `x` and `y` of each set, a line per pair, the marks.
    let panel = |area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
                 caption: &str,
                 (x_desc, x_range): (&str, std::ops::Range<f64>),
                 (y_desc, y_range): (&str, std::ops::Range<f64>),
                 point: &dyn Fn(&SetReport) -> Option<(f64, f64)>|
     -> Result<(), OutputError> {
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(72)
            .build_cartesian_2d(x_range, y_range)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|v| trim(*v))
            .y_label_formatter(&|v| trim(*v))
            .label_style(text)
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (_, rows)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    rows.iter().filter_map(|r| point(r)),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(
                    rows.iter()
                        .filter_map(|r| point(r))
                        .map(|p| Circle::new(p, 3, color.filled())),
                )
                .map_err(|e| err(&e))?;
        }
        for r in reports {
            let Some(p) = point(r) else { continue };
            if is(r, live) {
                chart
                    .draw_series([Circle::new(p, 9, BLACK.stroke_width(2))])
                    .map_err(|e| err(&e))?;
                chart
                    .draw_series([EmptyElement::at(p) + Text::new("live", (10, 6), text)])
                    .map_err(|e| err(&e))?;
            }
            if is(r, best) {
                chart
                    .draw_series([TriangleMarker::new(p, 9, BLACK.filled())])
                    .map_err(|e| err(&e))?;
                chart
                    .draw_series([EmptyElement::at(p) + Text::new("best", (10, -22), text)])
                    .map_err(|e| err(&e))?;
            }
        }
        Ok(())
    };
    panel(
        &areas[0],
        "Precision against recall",
        ("recall", 0.0..1.05),
        ("precision", 0.0..1.05),
        &|r| Some((r.recall?, r.precision?)),
    )?;
    panel(
        &areas[1],
        "Views saved",
        ("kill threshold", low..high),
        (
            "views saved",
            0.0..top(&|r| Some(r.views_saved.max(0) as f64)),
        ),
        &|r| Some((r.kill_threshold, r.views_saved.max(0) as f64)),
    )?;
    panel(
        &areas[2],
        "Median time to kill",
        ("kill threshold", low..high),
        ("seconds", 0.0..top(&|r| r.kill_p50_s)),
        &|r| Some((r.kill_threshold, r.kill_p50_s?)),
    )?;
    panel(
        &areas[3],
        "Sessions killed",
        ("kill threshold", low..high),
        ("killed", 0.0..top(&|r| Some(r.killed as f64))),
        &|r| Some((r.kill_threshold, r.killed as f64)),
    )?;
    // The legend: each pair's colour, then the marks.
    let mut x = 20;
    for (i, ((min, window), _)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        legend
            .draw(&Rectangle::new([(x, 22), (x + 18, 34)], color.filled()))
            .map_err(|e| err(&e))?;
        let label = format!("min {min}, {window} min window");
        legend
            .draw(&Text::new(label.clone(), (x + 24, 22), text))
            .map_err(|e| err(&e))?;
        x += 40 + 8 * label.len() as i32;
    }
    legend
        .draw(&Circle::new((x + 9, 28), 8, BLACK.stroke_width(2)))
        .map_err(|e| err(&e))?;
    legend
        .draw(&Text::new("live set", (x + 24, 22), text))
        .map_err(|e| err(&e))?;
    legend
        .draw(&TriangleMarker::new((x + 110, 28), 8, BLACK.filled()))
        .map_err(|e| err(&e))?;
    legend
        .draw(&Text::new("best score", (x + 124, 22), text))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(kill_threshold: f64, min: u32, killed: u64, score: f64) -> SetReport {
        SetReport {
            kill_threshold,
            min_interactions: min,
            timeout_minutes: 10,
            sessions: 100,
            killed,
            timed_out: 100 - killed,
            stopped: 0,
            open: 0,
            kill_p50_s: Some(100.0 + kill_threshold * 100.0),
            kill_p90_s: Some(300.0),
            poor: 30,
            killed_poor: killed.min(30),
            precision: Some(score),
            recall: Some(killed.min(30) as f64 / 30.0),
            views_saved: (killed * 50) as i64,
            score,
        }
    }

    #[test]
    fn the_chart_marks_the_live_and_the_best_set_in_four_panels() {
        let reports = vec![
            report(0.3, 5, 20, 0.6),
            report(0.5, 5, 35, 0.9),
            report(0.3, 10, 15, 0.5),
            report(0.5, 10, 30, 0.8),
        ];
        let path = std::env::temp_dir().join(format!("earlykill-chart-{}.svg", std::process::id()));
        plot(&reports, Some((0.5, 10, 10)), &path).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        let _ = std::fs::remove_file(&path);
        for text in [
            "Precision against recall",
            "Views saved",
            "Median time to kill",
            "Sessions killed",
            "live set",
            "best score",
            "min 5, 10 min window",
        ] {
            assert!(svg.contains(text), "{text} missing from the chart");
        }
        // The marks' labels, once in each of the four panels.
        for mark in ["live", "best"] {
            let n = svg.lines().filter(|l| l.trim() == mark).count();
            assert_eq!(n, 4, "{mark} labels");
        }
        // Okabe-Ito blue and orange, not the old red/green palette.
        assert!(svg.contains("#0072B2") && svg.contains("#E69F00"));
        assert!(plot(&reports, None, Path::new("chart.png")).is_err());
    }
}
