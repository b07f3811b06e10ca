//! The report's charts, drawn with plotters' SVG backend.
//!
//! Every chart goes through one function, [`draw`]: linear axes (a log scale is drawn
//! as log10 of the value with labels formatted back, which keeps one code path),
//! shaded and labelled fault bands under the data, then the lines and bars. The
//! legend is not drawn inside the plot: the HTML page draws it under the chart from
//! the same [`SeriesStyle`]s, so the plot area holds only data (which is also what
//! lets a test check the plot area's pixels for the series' colours).
//!
//! Colours come from the Okabe–Ito palette (safe for colour-blind readers), and
//! each series also differs in dash pattern and marker so the charts survive
//! grey-scale printing. plotters has no dashed polyline, so a dash pattern is added
//! to the SVG afterwards: every series of a chart has its own colour and the one
//! series line width, which makes `stroke="#RRGGBB" stroke-width="2"` name exactly
//! that series' lines.

use plotters::{coord::types::RangedCoordf64, prelude::*};

use crate::error::ReportError;

/// Width of a series line, in pixels (grid and axes are thinner; see module doc).
const SERIES_WIDTH: u32 = 2;
/// Chart size in pixels.
pub const WIDTH: u32 = 1100;
pub const HEIGHT: u32 = 380;

/// A marker drawn on some points of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    None,
    Circle,
    Triangle,
    Square,
    Cross,
}

/// How one series looks (shared by the SVG and the HTML legend).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesStyle {
    pub label: String,
    pub color: (u8, u8, u8),
    /// SVG `stroke-dasharray`, `None` for a solid line.
    pub dash: Option<&'static str>,
    pub marker: Marker,
    /// A reference line (the target rate), not measured data.
    pub reference: bool,
}

impl SeriesStyle {
    /// The `index`-th style of the palette.
    pub fn nth(index: usize, label: impl Into<String>) -> SeriesStyle {
        type Look = ((u8, u8, u8), Option<&'static str>, Marker);
        const PALETTE: [Look; 8] = [
            ((0x00, 0x72, 0xB2), None, Marker::None),
            ((0xD5, 0x5E, 0x00), Some("9 4"), Marker::Circle),
            ((0x00, 0x9E, 0x73), Some("2 3"), Marker::Triangle),
            ((0xCC, 0x79, 0xA7), Some("9 3 2 3"), Marker::Square),
            ((0xE6, 0x9F, 0x00), Some("14 4"), Marker::Cross),
            ((0x56, 0xB4, 0xE9), None, Marker::Circle),
            ((0x8C, 0x51, 0x0A), Some("6 3"), Marker::Triangle),
            ((0x01, 0x66, 0x5E), Some("2 4"), Marker::Square),
        ];
        let (color, dash, marker) = PALETTE[index % PALETTE.len()];
        SeriesStyle {
            label: label.into(),
            color,
            dash,
            marker,
            reference: false,
        }
    }

    /// The dark grey dashed reference line.
    pub fn reference(label: impl Into<String>) -> SeriesStyle {
        SeriesStyle {
            label: label.into(),
            color: (0x44, 0x44, 0x44),
            dash: Some("7 4"),
            marker: Marker::None,
            reference: true,
        }
    }

    pub fn hex(&self) -> String {
        format!(
            "#{:02X}{:02X}{:02X}",
            self.color.0, self.color.1, self.color.2
        )
    }

    fn rgb(&self) -> RGBColor {
        RGBColor(self.color.0, self.color.1, self.color.2)
    }
}

/// A line of a chart.
#[derive(Debug, Clone)]
pub struct Line {
    pub style: SeriesStyle,
    pub points: Vec<(f64, f64)>,
}

/// Bars of a histogram: `(from, to, height)`.
#[derive(Debug, Clone)]
pub struct Bars {
    pub style: SeriesStyle,
    pub bars: Vec<(f64, f64, f64)>,
}

/// A shaded fault window on a time axis.
#[derive(Debug, Clone)]
pub struct Band {
    pub label: String,
    pub start: f64,
    pub end: f64,
}

/// What to draw.
pub struct ChartSpec {
    pub id: String,
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    pub x_format: fn(&f64) -> String,
    pub y_format: fn(&f64) -> String,
    pub lines: Vec<Line>,
    pub bars: Vec<Bars>,
    pub bands: Vec<Band>,
    /// Said under the chart (e.g. which endpoints are left out).
    pub note: Option<String>,
}

/// A drawn chart.
#[derive(Debug, Clone)]
pub struct Chart {
    pub id: String,
    pub title: String,
    pub svg: String,
    pub width: u32,
    pub height: u32,
    /// Plot area in SVG pixels: `(left, top, right, bottom)`.
    pub plot_area: (i32, i32, i32, i32),
    pub series: Vec<SeriesStyle>,
    pub bands: Vec<Band>,
    pub note: Option<String>,
}

/// Plain numbers with at most three significant decimals.
pub fn format_number(value: &f64) -> String {
    let v = *value;
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        trim_zeros(format!("{v:.1}"))
    } else {
        trim_zeros(format!("{v:.3}"))
    }
}

fn trim_zeros(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Labels of a log10 axis of milliseconds.
pub fn format_log_ms(value: &f64) -> String {
    format_number(&10f64.powf(*value))
}

/// Labels of the percentile axis, where x is `-log10(1 - q)`: only whole numbers of
/// nines are labelled (0%, 90%, 99%, 99.9%), as on HdrHistogram's own plots.
pub fn format_percentile(value: &f64) -> String {
    if (value - value.round()).abs() > 1e-6 {
        return String::new();
    }
    let q = 100.0 * (1.0 - 10f64.powf(-*value));
    if q >= 99.0 {
        trim_zeros(format!("{q:.3}")) + "%"
    } else {
        format!("{q:.0}%")
    }
}

fn chart_error(id: String) -> impl Fn(String) -> ReportError {
    move |problem| ReportError::Chart {
        chart: id.clone(),
        problem,
    }
}

/// The plotting context of every chart: SVG, both axes plain `f64`.
type Plot<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws a chart.
pub fn draw(spec: ChartSpec) -> Result<Chart, ReportError> {
    let fail = chart_error(spec.id.clone());
    let (x0, x1) = widen(spec.x_range);
    let (y0, y1) = widen(spec.y_range);
    let mut svg = String::new();
    let plot_area;
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .margin_top(12)
            .margin_right(24)
            .margin_left(8)
            .margin_bottom(6)
            .x_label_area_size(48)
            .y_label_area_size(78)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| fail(e.to_string()))?;
        draw_mesh(&mut chart, &spec).map_err(&fail)?;
        let (xs, ys) = chart.plotting_area().get_pixel_range();
        plot_area = (xs.start, ys.start, xs.end, ys.end);
        // Faults first, so data is drawn over them.
        draw_bands(&mut chart, &spec.bands).map_err(&fail)?;
        for bars in &spec.bars {
            let color = bars.style.rgb();
            chart
                .draw_series(bars.bars.iter().map(|(from, to, height)| {
                    Rectangle::new([(*from, y0.max(0.0)), (*to, *height)], color.filled())
                }))
                .map_err(|e| fail(e.to_string()))?;
        }
        for line in &spec.lines {
            draw_line(&mut chart, line).map_err(&fail)?;
        }
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    for line in &spec.lines {
        if let Some(dash) = line.style.dash {
            let plain = format!(
                "stroke=\"{}\" stroke-width=\"{SERIES_WIDTH}\"",
                line.style.hex()
            );
            svg = svg.replace(&plain, &format!("{plain} stroke-dasharray=\"{dash}\""));
        }
    }
    let mut series: Vec<SeriesStyle> = spec.bars.iter().map(|b| b.style.clone()).collect();
    series.extend(spec.lines.iter().map(|l| l.style.clone()));
    Ok(Chart {
        id: spec.id,
        title: spec.title,
        svg,
        width: WIDTH,
        height: HEIGHT,
        plot_area,
        series,
        bands: spec.bands,
        note: spec.note,
    })
}

/// Grid, axes, their labels and descriptions.
fn draw_mesh(chart: &mut Plot<'_, '_>, spec: &ChartSpec) -> Result<(), String> {
    chart
        .configure_mesh()
        .x_desc(spec.x_desc.as_str())
        .y_desc(spec.y_desc.as_str())
        .x_labels(12)
        .y_labels(8)
        .x_label_formatter(&spec.x_format)
        .y_label_formatter(&spec.y_format)
        .bold_line_style(RGBColor(0xDD, 0xDD, 0xDD))
        .light_line_style(RGBColor(0xF2, 0xF2, 0xF2))
        .axis_style(RGBColor(0x22, 0x22, 0x22))
        .label_style(
            ("sans-serif", 14)
                .into_font()
                .color(&RGBColor(0x22, 0x22, 0x22)),
        )
        .axis_desc_style(
            ("sans-serif", 15)
                .into_font()
                .color(&RGBColor(0x22, 0x22, 0x22)),
        )
        .draw()
        .map_err(|e| e.to_string())
}

/// Fault windows as shaded bands with their labels. Two shades alternate so that
/// neighbouring faults stay apart in grey-scale too.
fn draw_bands(chart: &mut Plot<'_, '_>, bands: &[Band]) -> Result<(), String> {
    let x = chart.x_range();
    let (x0, x1) = (x.start, x.end);
    let y = chart.y_range();
    let (y0, y1) = (y.start, y.end);
    for (index, band) in bands.iter().enumerate() {
        let start = band.start.clamp(x0, x1);
        // An instantaneous fault (a kill) still gets a visible sliver and its label.
        let end = band
            .end
            .clamp(x0, x1)
            .max(start + (x1 - x0) / 200.0)
            .min(x1);
        if end <= start {
            continue;
        }
        let shade = if index % 2 == 0 { 0.16 } else { 0.09 };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(start, y0), (end, y1)],
                RGBAColor(0x55, 0x55, 0x55, shade).filled(),
            )))
            .map_err(|e| e.to_string())?;
        // Labels of faults that start close together go on different rows.
        let label_row = (index % 3) as i32;
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((start, y1))
                    + Text::new(
                        format!("fault: {}", band.label),
                        (4, 4 + 17 * label_row),
                        ("sans-serif", 13)
                            .into_font()
                            .color(&RGBColor(0x11, 0x11, 0x11)),
                    ),
            ))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One line series and its markers (a dozen per line, so lines stay apart without
/// colour).
fn draw_line(chart: &mut Plot<'_, '_>, line: &Line) -> Result<(), String> {
    let color = line.style.rgb();
    let style = ShapeStyle {
        color: color.to_rgba(),
        filled: false,
        stroke_width: SERIES_WIDTH,
    };
    chart
        .draw_series(LineSeries::new(line.points.iter().copied(), style))
        .map_err(|e| e.to_string())?;
    let every = (line.points.len() / 12).max(1);
    let marked = line.points.iter().copied().step_by(every);
    let filled = color.filled();
    let result = match line.style.marker {
        Marker::None => Ok(()),
        Marker::Circle => chart
            .draw_series(marked.map(|p| Circle::new(p, 4, filled)))
            .map(|_| ()),
        Marker::Triangle => chart
            .draw_series(marked.map(|p| TriangleMarker::new(p, 5, filled)))
            .map(|_| ()),
        Marker::Square => chart
            .draw_series(
                marked.map(|p| EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], filled)),
            )
            .map(|_| ()),
        Marker::Cross => chart
            .draw_series(marked.map(|p| Cross::new(p, 4, color.stroke_width(3))))
            .map(|_| ()),
    };
    result.map_err(|e| e.to_string())
}

/// A range with some room, never empty.
fn widen((low, high): (f64, f64)) -> (f64, f64) {
    let (low, high) = if low.is_finite() && high.is_finite() {
        (low, high)
    } else {
        (0.0, 1.0)
    };
    if high > low {
        (low, high)
    } else {
        (low - 0.5, high + 0.5)
    }
}
