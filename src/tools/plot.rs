//! `caffe plot LOG… [-o out.png|out.svg] [-x iters|seconds] [-y test-accuracy|test-loss|train-loss|lr]`:
//! curves from Caffe-format training logs (ours and real Caffe's, either glog
//! prefix), several logs in one chart, one legend entry per log.
//!
//! The numbers come from `parse_log`, so a plot shows what the CSV files hold.
//! Text is drawn with DejaVu Sans compiled into the binary, so PNGs render the
//! same on a machine without any system fonts.
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::gflags::{self, Spec};
use super::parse_log::{self, LogData};
use crate::{Error, Result};

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// The horizontal axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    Iters,
    Seconds,
}

impl XAxis {
    pub fn parse(s: &str) -> Result<XAxis> {
        match s {
            "iters" | "iter" | "iterations" => Ok(XAxis::Iters),
            "seconds" | "secs" | "time" => Ok(XAxis::Seconds),
            other => Err(Error::invalid(format!("-x must be iters or seconds, got '{other}'"))),
        }
    }

    fn label(self) -> &'static str {
        match self {
            XAxis::Iters => "Iterations",
            XAxis::Seconds => "Seconds",
        }
    }
}

/// The curve: a test or train output by name, or the learning rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YSeries {
    Test(String),
    Train(String),
    LearningRate,
}

impl YSeries {
    /// `test-accuracy`, `test-loss`, `train-loss`, `lr`, or any `test-NAME` / `train-NAME`.
    pub fn parse(s: &str) -> Result<YSeries> {
        if s == "lr" || s == "learning-rate" {
            return Ok(YSeries::LearningRate);
        }
        match s.split_once('-') {
            Some(("test", name)) if !name.is_empty() => Ok(YSeries::Test(name.to_string())),
            Some(("train", name)) if !name.is_empty() => Ok(YSeries::Train(name.to_string())),
            _ => Err(Error::invalid(format!(
                "-y must be test-accuracy, test-loss, train-loss, lr (or test-NAME / train-NAME for an output NAME), got '{s}'"
            ))),
        }
    }

    fn label(&self) -> String {
        match self {
            YSeries::Test(name) => format!("Test {name}"),
            YSeries::Train(name) => format!("Training {name}"),
            YSeries::LearningRate => "Learning rate".to_string(),
        }
    }

    fn rising(&self) -> bool {
        matches!(self, YSeries::Test(n) | YSeries::Train(n) if n.contains("acc"))
    }
}

/// One log's curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// The column of `rows` for `name`: that output, else the first whose name contains it.
fn pick_column(rows: &[parse_log::Row], name: &str) -> Option<String> {
    let first = rows.first()?;
    let names: Vec<&str> = first.output_names().collect();
    names.iter().find(|n| **n == name).or_else(|| names.iter().find(|n| n.contains(name))).map(|n| n.to_string())
}

/// The points of `series` in one parsed log (empty when the log has none).
pub fn series_points(data: &LogData, x: XAxis, series: &YSeries) -> Vec<(f64, f64)> {
    let pick_x = |iteration: f64, seconds: f64| match x {
        XAxis::Iters => iteration,
        XAxis::Seconds => seconds,
    };
    let points: Vec<(f64, f64)> = match series {
        YSeries::LearningRate => data.learning_rates.iter().map(|p| (pick_x(p.iteration, p.seconds), p.lr)).collect(),
        YSeries::Test(name) | YSeries::Train(name) => {
            let (rows, unfinished) = if matches!(series, YSeries::Test(_)) {
                (&data.test, &data.unfinished_test)
            } else {
                (&data.train, &data.unfinished_train)
            };
            let rows: Vec<parse_log::Row> = rows.iter().chain(unfinished).cloned().collect();
            let Some(column) = pick_column(&rows, name) else { return Vec::new() };
            rows.iter().filter_map(|r| Some((pick_x(r.iteration(), r.seconds()), r.get(&column)?))).collect()
        }
    };
    points.into_iter().filter(|(a, b)| a.is_finite() && b.is_finite()).collect()
}

/// Legend labels: each log's file stem, with its folder when two stems collide.
pub fn labels(logs: &[PathBuf]) -> Vec<String> {
    let stem =
        |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string());
    let stems: Vec<String> = logs.iter().map(|p| stem(p)).collect();
    logs.iter()
        .zip(&stems)
        .map(|(p, s)| {
            if stems.iter().filter(|t| *t == s).count() > 1 {
                match p.parent().and_then(|d| d.file_name()) {
                    Some(dir) => format!("{}/{s}", dir.to_string_lossy()),
                    None => p.display().to_string(),
                }
            } else {
                s.clone()
            }
        })
        .collect()
}

/// What to plot and where.
#[derive(Debug, Clone)]
pub struct PlotOptions {
    pub logs: Vec<PathBuf>,
    pub out: PathBuf,
    pub x: XAxis,
    pub y: YSeries,
    pub width: u32,
    pub height: u32,
    pub title: Option<String>,
}

/// Reads the logs; a log without the series is skipped with a warning, and
/// an error comes only when none has it.
pub fn curves(opts: &PlotOptions) -> Result<Vec<Curve>> {
    let mut out = Vec::new();
    for (path, label) in opts.logs.iter().zip(labels(&opts.logs)) {
        let data = parse_log::parse_file(path)?;
        let points = series_points(&data, opts.x, &opts.y);
        if points.is_empty() {
            crate::warn!(
                crate::here!("plot.rs"),
                "{}: no '{}' values in this log; skipped",
                path.display(),
                opts.y.label()
            );
            continue;
        }
        out.push(Curve { label, points });
    }
    if out.is_empty() {
        return Err(Error::invalid(format!(
            "no log holds '{}' values (outputs are read from 'Test net output' / 'Train net output' lines)",
            opts.y.label()
        )));
    }
    Ok(out)
}

// Matplotlib's tab10 colours, then six darker ones, so that a figure of up
// to 16 curves repeats no colour; all readable on white.
const COLORS: [RGBColor; 16] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 0),
    RGBColor(0, 0, 128),
    RGBColor(128, 0, 0),
    RGBColor(0, 110, 110),
    RGBColor(85, 107, 47),
    RGBColor(184, 134, 11),
];

/// A range around `values` with a little room on both sides.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.05
    } else if lo != 0.0 {
        lo.abs() * 0.1
    } else {
        0.5
    };
    (lo - pad, hi + pad)
}

/// Tick text with as many decimals as the axis span needs (`1000`, `0.85`, `0.0095`).
fn tick_formatter(lo: f64, hi: f64) -> impl Fn(&f64) -> String {
    let step = (hi - lo).abs() / 8.0;
    let decimals = if step > 0.0 { (-step.log10()).ceil().clamp(0.0, 12.0) as usize } else { 2 };
    move |v: &f64| {
        if decimals > 5 && *v != 0.0 {
            format!("{:.2e}", v)
        } else {
            format!("{:.*}", decimals, v)
        }
    }
}

fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    curves: &[Curve],
    opts: &PlotOptions,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    area.fill(&WHITE)?;
    let (x0, x1) = padded_range(curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)));
    let (y0, y1) = padded_range(curves.iter().flat_map(|c| c.points.iter().map(|p| p.1)));
    let title =
        opts.title.clone().unwrap_or_else(|| format!("{} vs. {}", opts.y.label(), opts.x.label().to_lowercase()));
    let (x_ticks, y_ticks) = (tick_formatter(x0, x1), tick_formatter(y0, y1));
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 26))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_label_formatter(&x_ticks)
        .y_label_formatter(&y_ticks)
        .x_desc(opts.x.label())
        .y_desc(opts.y.label())
        .axis_desc_style((FAMILY, 18))
        .label_style((FAMILY, 14))
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()?;
    for (i, curve) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(curve.points.iter().copied(), color.stroke_width(2)))?
            .label(curve.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
        // Markers show where the measurements are when they are sparse (test passes).
        if curve.points.len() <= 60 {
            chart.draw_series(curve.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    let corner = if opts.y.rising() { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight };
    chart
        .configure_series_labels()
        .position(corner)
        .margin(12)
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(160, 160, 160))
        .draw()?;
    area.present()?;
    Ok(())
}

fn register_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut ok = true;
    ONCE.call_once(|| ok = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("the embedded DejaVu Sans font does not load"))
    }
}

/// Draws `curves` into `opts.out`: PNG or SVG by its extension.
pub fn render(curves: &[Curve], opts: &PlotOptions) -> Result<()> {
    register_font()?;
    let (w, h) = (opts.width, opts.height);
    if !(100..=20000).contains(&w) || !(100..=20000).contains(&h) {
        return Err(Error::invalid(format!("chart size {w}×{h}: each side must be 100 to 20000 pixels")));
    }
    let out = &opts.out;
    let ext = out.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    let drawing_err = |e: String| Error::invalid(format!("{}: drawing the chart failed: {e}", out.display()));
    match ext.as_str() {
        "png" => {
            let mut pixels = vec![0u8; w as usize * h as usize * 3];
            {
                let area = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
                draw(&area, curves, opts).map_err(|e| drawing_err(e.to_string()))?;
            }
            crate::util::write_atomic_with(out, |tmp| {
                image::save_buffer_with_format(
                    tmp,
                    &pixels,
                    w,
                    h,
                    image::ExtendedColorType::Rgb8,
                    image::ImageFormat::Png,
                )
                .map_err(|e| Error::invalid(format!("{}: {e}", out.display())))
            })?;
        }
        "svg" => {
            let mut text = String::new();
            {
                let area = SVGBackend::with_string(&mut text, (w, h)).into_drawing_area();
                draw(&area, curves, opts).map_err(|e| drawing_err(e.to_string()))?;
            }
            crate::util::write_atomic(out, text.as_bytes())?;
        }
        _ => return Err(Error::invalid(format!("{}: the output must end in .png or .svg", out.display()))),
    }
    Ok(())
}

/// Reads the logs and writes the chart.
pub fn run(opts: &PlotOptions) -> Result<()> {
    let curves = curves(opts)?;
    render(&curves, opts)
}

pub const SPEC: Spec = Spec {
    tool: "plot",
    usage: "LOG... [-o out.png|out.svg] [-x iters|seconds] [-y test-accuracy|test-loss|train-loss|lr] [-width 1000] [-height 600] [-title T]",
    bools: &[],
    values: &[
        ("o", "", "the image to write, .png or .svg (default: <y>-vs-<x>.png)"),
        ("x", "iters", "the x axis: iters or seconds"),
        ("y", "test-accuracy", "the curve: test-accuracy, test-loss, train-loss or lr"),
        ("width", "1000", "the image width in pixels"),
        ("height", "600", "the image height in pixels"),
        ("title", "", "the plot's title (default: \"<y> vs. <x>\")"),
    ],
};

/// The CLI entry.
pub fn main(args: &[String]) -> Result<()> {
    let flags = gflags::parse(&SPEC, args)?;
    gflags::expect_positional(&SPEC, &flags, 1, usize::MAX)?;
    let x = XAxis::parse(flags.value("x"))?;
    let y_name = flags.value("y");
    let y = YSeries::parse(y_name)?;
    let out = match flags.value("o") {
        "" => PathBuf::from(format!("{y_name}-vs-{}.png", flags.value("x"))),
        o => PathBuf::from(o),
    };
    let size = |name: &str| -> Result<u32> {
        u32::try_from(flags.int(name)?)
            .map_err(|_| Error::invalid(format!("-{name} must be a positive number of pixels")))
    };
    let opts = PlotOptions {
        logs: flags.positional.iter().map(PathBuf::from).collect(),
        out,
        x,
        y,
        width: size("width")?,
        height: size("height")?,
        title: Some(flags.value("title").to_string()).filter(|t| !t.is_empty()),
    };
    run(&opts)?;
    println!("Wrote {}", opts.out.display());
    Ok(())
}
