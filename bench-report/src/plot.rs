//! SVG charts of one group, drawn with plotters' SVG backend.
//!
//! The SVG backend writes text as `<text>` elements, so no font library is
//! needed (plotters estimates text extents itself). Groups whose parameters
//! are increasing thread counts get one line per implementation (figure vs
//! threads, log2 axis); the others get bars grouped by parameter, or one bar
//! per implementation when there is a single parameter.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::model::{Figure, Group, Metric};

const SIZE: (u32, u32) = (800, 440);
const FONT: &str = "sans-serif";
/// Width of the colour key right of the chart.
const LEGEND_WIDTH: u32 = 170;

/// Tableau-like palette; column 0 (sheaf, when present) is red.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
];

/// A linear axis whose ticks sit exactly at `ticks` (category centres or
/// thread counts) rather than at round numbers.
struct TickedAxis {
    linear: RangedCoordf64,
    ticks: Vec<f64>,
}

impl TickedAxis {
    fn new(range: Range<f64>, ticks: Vec<f64>) -> Self {
        TickedAxis {
            linear: range.into(),
            ticks,
        }
    }
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> Range<f64> {
        self.linear.range()
    }
}

fn color(col: usize) -> RGBColor {
    PALETTE[col % PALETTE.len()]
}

/// The chart of `group` as an SVG document.
pub(crate) fn render_svg(group: &Group) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let split = || root.split_horizontally(SIZE.0 - LEGEND_WIDTH);
        match group.thread_counts() {
            Some(counts) => {
                let (chart, key) = split();
                lines(&chart, group, &counts).and_then(|()| legend(&key, group, true))
            }
            // Bars labelled by implementation need no key.
            None if group.params.len() <= 1 => bars(&root, group),
            None => {
                let (chart, key) = split();
                bars(&chart, group).and_then(|()| legend(&key, group, false))
            }
        }
        .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult<'a> =
    Result<(), DrawingAreaErrorKind<<SVGBackend<'a> as DrawingBackend>::ErrorType>>;

/// The y-axis description and the scaled figure of every cell.
fn scaled(group: &Group) -> (String, Vec<Vec<Option<Figure>>>) {
    let scale = group.scale();
    let desc = match group.metric {
        Metric::Time => format!("{} per iteration (lower is better)", scale.unit),
        Metric::Elements => "M items/s (higher is better)".to_owned(),
        _ => format!("{} (higher is better)", scale.unit),
    };
    let figures = (0..group.params.len())
        .map(|row| {
            (0..group.implementations.len())
                .map(|col| group.figure(row, col).map(|f| f.scaled(scale)))
                .collect()
        })
        .collect();
    (desc, figures)
}

/// Top of the y axis: 10% above the highest interval bound.
fn y_top(figures: &[Vec<Option<Figure>>]) -> f64 {
    let max = figures
        .iter()
        .flatten()
        .flatten()
        .map(|f| f.upper.max(f.value))
        .fold(0.0, f64::max);
    if max > 0.0 {
        max * 1.1
    } else {
        1.0
    }
}

fn lines<'a>(root: &Area<'a>, group: &Group, counts: &[u32]) -> DrawResult<'a> {
    let (y_desc, figures) = scaled(group);
    // Thread counts usually double from row to row: space them on a log2 axis.
    let xs: Vec<f64> = counts.iter().map(|&c| f64::from(c.max(1)).log2()).collect();
    let (first, last) = (xs[0], xs[xs.len() - 1]);
    let pad = (last - first) * 0.08;
    let x_desc = if group.params.iter().any(|p| p.contains('p')) {
        "threads (producers + consumers, log scale)"
    } else {
        "threads (log scale)"
    };
    let label_of = |x: &f64| {
        xs.iter()
            .position(|c| (c - x).abs() < 1e-9)
            .map_or_else(|| format!("{x}"), |i| group.params[i].clone())
    };

    let mut chart = ChartBuilder::on(root)
        .caption(&group.id, (FONT, 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            TickedAxis::new(first - pad..last + pad, xs.clone()),
            0.0..y_top(&figures),
        )?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&label_of)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(WHITE)
        .draw()?;

    for col in 0..group.implementations.len() {
        let c = color(col);
        let points: Vec<(f64, Figure)> = xs
            .iter()
            .zip(&figures)
            .filter_map(|(&x, row)| row[col].map(|f| (x, f)))
            .collect();
        chart.draw_series(LineSeries::new(
            points.iter().map(|&(x, f)| (x, f.value)),
            c.stroke_width(2),
        ))?;
        chart.draw_series(
            points
                .iter()
                .map(|&(x, f)| Circle::new((x, f.value), 3, c.filled())),
        )?;
        chart.draw_series(points.iter().map(|&(x, f)| {
            ErrorBar::new_vertical(x, f.lower, f.value, f.upper, c.stroke_width(1), 8)
        }))?;
    }
    Ok(())
}

fn bars<'a>(root: &Area<'a>, group: &Group) -> DrawResult<'a> {
    let (y_desc, figures) = scaled(group);
    let kind = if group.params_are_threads() {
        "threads"
    } else {
        "parameter"
    };
    // Along x: one category per parameter holding a bar per implementation,
    // or, with at most one parameter, one category per implementation.
    let by_implementation = group.params.len() <= 1;
    let (labels, x_desc) = if by_implementation {
        let desc = match group.params.first() {
            Some(p) if !p.is_empty() => format!("{kind}: {p}"),
            _ => String::new(),
        };
        (&group.implementations, desc)
    } else {
        (&group.params, kind.to_owned())
    };
    let n = labels.len().max(1);
    let k = group.implementations.len().max(1);
    let width = 0.8 / k as f64;
    let centers: Vec<f64> = (0..n).map(|i| i as f64 + 0.5).collect();
    let label_of = |x: &f64| {
        let i = (x.floor().max(0.0) as usize).min(n - 1);
        labels.get(i).cloned().unwrap_or_default()
    };

    let mut chart = ChartBuilder::on(root)
        .caption(&group.id, (FONT, 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            TickedAxis::new(0.0..n as f64, centers),
            0.0..y_top(&figures),
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&label_of)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(WHITE)
        .draw()?;

    for col in 0..group.implementations.len() {
        let c = color(col);
        let bars: Vec<(f64, f64, Figure)> = figures
            .iter()
            .enumerate()
            .filter_map(|(row, cells)| {
                let left = if by_implementation {
                    col as f64 + 0.2
                } else {
                    row as f64 + 0.1 + col as f64 * width
                };
                let right = if by_implementation {
                    left + 0.6
                } else {
                    left + width
                };
                cells[col].map(|f| (left, right, f))
            })
            .collect();
        chart.draw_series(
            bars.iter()
                .map(|&(l, r, f)| Rectangle::new([(l, 0.0), (r, f.value)], c.filled())),
        )?;
        chart.draw_series(bars.iter().map(|&(l, r, f)| {
            let whisker = BLACK.stroke_width(1);
            ErrorBar::new_vertical((l + r) / 2.0, f.lower, f.value, f.upper, whisker, 8)
        }))?;
    }
    Ok(())
}

/// Colour key to the right of the chart, so that it never hides data.
fn legend<'a>(area: &Area<'a>, group: &Group, line: bool) -> DrawResult<'a> {
    let style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (col, name) in group.implementations.iter().enumerate() {
        let c = color(col);
        let y = 60 + 22 * col as i32;
        if line {
            area.draw(&PathElement::new([(4, y), (24, y)], c.stroke_width(2)))?;
            area.draw(&Circle::new((14, y), 3, c.filled()))?;
        } else {
            area.draw(&Rectangle::new([(8, y - 6), (20, y + 6)], c.filled()))?;
        }
        area.draw(&Text::new(name.as_str(), (30, y), style.clone()))?;
    }
    Ok(())
}
