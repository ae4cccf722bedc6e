//! Charts, drawn by `plotters` with its SVG backend only (no font or bitmap features: the
//! text is left to the viewer's fonts), so every chart maxprune writes has real axes, ticks that
//! read differently, units in the axis labels and a legend.

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::error::{Error, Result};

const SIZE: (u32, u32) = (720, 440);
/// Matplotlib's "tab10" palette: ten colours that stay apart.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A line through the points, each point marked.
    Line,
    /// The points alone.
    Points,
    /// A thin line without point marks (curves with many points, references).
    Curve,
}

/// One named series of `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// The points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// How it is drawn.
    pub mark: Mark,
}

impl Series {
    /// A series named `name`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, mark: Mark) -> Series {
        Series {
            name: name.into(),
            points,
            mark,
        }
    }
}

/// An x-y chart: series, and optionally a reference level, a band, vertical markers and one
/// highlighted point.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// The x axis' label, with its unit.
    pub x_label: String,
    /// The y axis' label, with its unit.
    pub y_label: String,
    /// The data.
    pub series: Vec<Series>,
    /// A horizontal reference line `(legend, y)`, e.g. the unpruned network's accuracy.
    pub reference: Option<(String, f64)>,
    /// A shaded horizontal band `(legend, low, high)`, e.g. the tolerance of a stopping rule.
    pub band: Option<(String, f64, f64)>,
    /// Vertical marker lines `(label, x)`, e.g. a paper's figures.
    pub verticals: Vec<(String, f64)>,
    /// One point drawn larger with a label, e.g. the chosen step.
    pub highlight: Option<(String, (f64, f64))>,
}

fn draw_err(e: impl std::fmt::Display) -> Error {
    Error::invalid("chart", format!("drawing failed: {e}"))
}

/// Tick labels that differ from each other: as many decimals as the tick spacing needs, and
/// thousands as `k` where the values are large.
fn tick_format(lo: f64, hi: f64, ticks: usize) -> impl Fn(&f64) -> String {
    let step = ((hi - lo) / ticks.max(1) as f64).abs().max(f64::MIN_POSITIVE);
    let kilo = hi.abs().max(lo.abs()) >= 10_000.0;
    let scaled = if kilo { step / 1000.0 } else { step };
    let decimals = if scaled >= 1.0 {
        0
    } else {
        (-scaled.log10()).ceil() as usize
    };
    move |v: &f64| {
        if kilo {
            format!("{:.*}k", decimals, v / 1000.0)
        } else {
            format!("{v:.decimals$}")
        }
    }
}

/// `[lo, hi]` widened by 8% of its span on each side (or by 1 around a single value).
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let pad = if hi > lo {
        (hi - lo) * 0.08
    } else {
        1.0_f64.max(lo.abs() * 0.05)
    };
    (lo - pad, hi + pad)
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.filter(|v| v.is_finite()).fold(None, |acc, v| {
        Some(acc.map_or((v, v), |(lo, hi): (f64, f64)| (lo.min(v), hi.max(v))))
    })
}

const TICKS: usize = 6;

impl Chart {
    /// A chart with a title and axis labels, and nothing drawn yet.
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> Chart {
        Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..Chart::default()
        }
    }

    /// The chart as an SVG document.
    pub fn to_svg(&self) -> Result<String> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(draw_err)?;
        }
        Ok(svg)
    }

    fn draw(&self, root: &DrawingArea<SVGBackend<'_>, Shift>) -> Result<()> {
        root.fill(&WHITE).map_err(draw_err)?;
        let points = || self.series.iter().flat_map(|s| s.points.iter());
        let xs = points().map(|p| p.0).chain(self.verticals.iter().map(|v| v.1));
        let ys = points().map(|p| p.1).chain(self.reference.iter().map(|r| r.1));
        // A band is shown whole when it is near the data; a wide one (a permissive tolerance)
        // is cut at the data's range rather than squeezing the data into a line.
        let data = bounds(ys);
        let ys = data
            .into_iter()
            .flat_map(|(lo, hi)| [lo, hi])
            .chain(self.band.iter().flat_map(|b| {
                let span = data.map_or(f64::INFINITY, |(lo, hi)| (hi - lo).max(1.0));
                let near = move |v: f64| data.is_none_or(|(lo, hi)| v >= lo - span && v <= hi + span);
                [b.1, b.2].into_iter().filter(move |&v| near(v))
            }));
        let (x0, x1) = padded_or_unit(bounds(xs));
        let (y0, y1) = padded_or_unit(bounds(ys));
        let mut chart = axes(root, &self.title, &self.x_label, &self.y_label, (x0, x1), (y0, y1))?;
        if let Some((name, lo, hi)) = &self.band {
            let fill = RGBColor(44, 160, 44).mix(0.12).filled();
            chart
                .draw_series([Rectangle::new([(x0, lo.max(y0)), (x1, hi.min(y1))], fill)])
                .map_err(draw_err)?
                .label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], fill));
        }
        if let Some((name, y)) = &self.reference {
            let style = BLACK.mix(0.6).stroke_width(1);
            chart
                .draw_series(LineSeries::new([(x0, *y), (x1, *y)], style))
                .map_err(draw_err)?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
        }
        for (i, (label, x)) in self.verticals.iter().enumerate() {
            let style = BLACK.mix(0.45).stroke_width(1);
            chart
                .draw_series(LineSeries::new([(*x, y0), (*x, y1)], style))
                .map_err(draw_err)?;
            // Labels step down, so that close markers do not print over each other.
            let y = y1 - (y1 - y0) * (0.02 + 0.06 * i as f64);
            let at = (*x + (x1 - x0) * 0.005, y);
            chart
                .draw_series([Text::new(label.clone(), at, ("sans-serif", 12).into_font())])
                .map_err(draw_err)?;
        }
        for (i, s) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts = s.points.iter().copied();
            let anno = match s.mark {
                Mark::Line | Mark::Curve => chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(draw_err)?,
                Mark::Points => chart
                    .draw_series(pts.clone().map(|p| Circle::new(p, 4, color.filled())))
                    .map_err(draw_err)?,
            };
            anno.label(&s.name)
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, color.filled()));
            if s.mark == Mark::Line {
                chart
                    .draw_series(pts.map(|p| Circle::new(p, 3, color.filled())))
                    .map_err(draw_err)?;
            }
        }
        if let Some((label, p)) = &self.highlight {
            chart
                .draw_series([Circle::new(*p, 8, BLACK.stroke_width(2))])
                .map_err(draw_err)?;
            chart
                .draw_series([Text::new(label.clone(), *p, ("sans-serif", 13).into_font())])
                .map_err(draw_err)?;
        }
        chart
            .configure_series_labels()
            .position(self.legend_corner((x0, x1), (y0, y1)))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(draw_err)
    }
}

impl Chart {
    /// The corner whose quarter of the plot holds the fewest points, for the legend.
    fn legend_corner(&self, (x0, x1): (f64, f64), (y0, y1): (f64, f64)) -> SeriesLabelPosition {
        let mut counts = [0usize; 4];
        for &(x, y) in self.series.iter().flat_map(|s| s.points.iter()) {
            let right = (x - x0) > (x1 - x0) / 2.0;
            let upper = (y - y0) > (y1 - y0) / 2.0;
            counts[usize::from(upper) * 2 + usize::from(right)] += 1;
        }
        let corners = [
            SeriesLabelPosition::LowerLeft,
            SeriesLabelPosition::LowerRight,
            SeriesLabelPosition::UpperLeft,
            SeriesLabelPosition::UpperRight,
        ];
        let best = (0..4).min_by_key(|&i| counts[i]).unwrap_or(0);
        corners[best].clone()
    }
}

type Axes<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart area with its title, axes, labelled distinct ticks and a light grid.
fn axes<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> Result<Axes<'a, 'b>> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_err)?;
    let (fx, fy) = (tick_format(x0, x1, TICKS), tick_format(y0, y1, TICKS));
    chart
        .configure_mesh()
        .x_labels(TICKS)
        .y_labels(TICKS)
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .x_desc(x_label)
        .y_desc(y_label)
        .light_line_style(WHITE)
        .draw()
        .map_err(draw_err)?;
    Ok(chart)
}

fn padded_or_unit(b: Option<(f64, f64)>) -> (f64, f64) {
    b.map_or((0.0, 1.0), |(lo, hi)| padded(lo, hi))
}

/// A histogram of `values` over `[0, max]` in `bins` bins, counting `what` (the y axis' unit).
pub fn histogram(title: &str, x_label: &str, what: &str, values: &[f64], bins: usize) -> Result<String> {
    let bins = bins.max(1);
    let hi = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-12);
    let mut counts = vec![0usize; bins];
    for &v in values.iter().filter(|v| v.is_finite()) {
        counts[((v.max(0.0) / hi * bins as f64) as usize).min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.08;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = axes(&root, title, x_label, what, (0.0, hi), (0.0, top))?;
        let width = hi / bins as f64;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x = i as f64 * width;
                Rectangle::new([(x, 0.0), (x + width * 0.92, c as f64)], COLORS[0].filled())
            }))
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// A horizontal bar chart of ratios, as `maxprune chart bars` reads it from JSON: one bar per
/// `(label, value)`, top to bottom in the given order, each with its value printed beside it as
/// `1.23x`, and an optional vertical reference line `(legend, x)`, e.g. parity at 1.0.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarChart {
    /// Title above the plot.
    pub title: String,
    /// The value axis' label, with its unit.
    pub value_label: String,
    /// The bars, top to bottom.
    pub bars: Vec<(String, f64)>,
    /// A vertical reference line `(legend, x)`.
    #[serde(default)]
    pub reference: Option<(String, f64)>,
}

impl BarChart {
    /// Reads a chart from the JSON file at `path`, refusing text that an SVG document cannot
    /// hold: XML 1.0 has no control characters other than tab and line breaks.
    pub fn read(path: &std::path::Path) -> Result<BarChart> {
        let chart: BarChart = crate::fsio::read_json(path)?;
        let texts = [
            ("title".to_string(), &chart.title),
            ("value_label".to_string(), &chart.value_label),
        ]
        .into_iter()
        .chain(
            chart
                .bars
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("bars[{i}] label"), &b.0)),
        )
        .chain(chart.reference.iter().map(|r| ("reference legend".to_string(), &r.0)));
        for (what, text) in texts {
            if text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
                return Err(Error::Format {
                    path: path.display().to_string(),
                    what,
                    expected: "text without control characters (an SVG document cannot hold them)".into(),
                    found: format!("{text:?}"),
                });
            }
        }
        Ok(chart)
    }

    /// The chart as an SVG document.
    pub fn to_svg(&self) -> Result<String> {
        bars(
            &self.title,
            &self.value_label,
            &self.bars,
            self.reference.as_ref().map(|(l, x)| (l.as_str(), *x)),
        )
    }
}

fn bars(title: &str, value_label: &str, bars: &[(String, f64)], reference: Option<(&str, f64)>) -> Result<String> {
    let n = bars.len().max(1);
    let hi = bars
        .iter()
        .map(|b| b.1)
        .chain(reference.map(|r| r.1))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-12)
        * 1.15;
    let label_width = bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(0) as u32 * 7 + 16;
    let height = (SIZE.1).max(90 + 26 * n as u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (SIZE.0 + label_width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0.0..hi, (0..n).into_segmented())
            .map_err(draw_err)?;
        // Bar i sits in segment n - 1 - i, so the first bar is at the top.
        let name = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => n
                .checked_sub(1 + i)
                .and_then(|row| bars.get(row))
                .map_or(String::new(), |b| b.0.clone()),
            _ => String::new(),
        };
        let fx = tick_format(0.0, hi, TICKS);
        chart
            .configure_mesh()
            .x_labels(TICKS)
            .y_labels(n)
            .x_label_formatter(&fx)
            .y_label_formatter(&name)
            .x_desc(value_label)
            .disable_y_mesh()
            .light_line_style(WHITE)
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let row = n - 1 - i;
                let mut bar = Rectangle::new(
                    [(0.0, SegmentValue::Exact(row)), (*v, SegmentValue::Exact(row + 1))],
                    COLORS[0].filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            }))
            .map_err(draw_err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let at = (*v + hi * 0.01, SegmentValue::CenterOf(n - 1 - i));
                Text::new(format!("{v:.2}x"), at, ("sans-serif", 12).into_font())
            }))
            .map_err(draw_err)?;
        if let Some((legend, x)) = reference {
            let style = COLORS[1].stroke_width(2);
            chart
                .draw_series(LineSeries::new(
                    [(x, SegmentValue::Exact(0)), (x, SegmentValue::Exact(n))],
                    style,
                ))
                .map_err(draw_err)?
                .label(legend)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The text of every `<text>` element.
    pub(crate) fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                t.split_once('>')
                    .map(|(_, rest)| rest.split("</text>").next().unwrap_or("").trim().to_string())
            })
            .collect()
    }

    #[test]
    fn an_accuracy_chart_has_its_title_labels_one_mark_per_step_and_distinct_ticks() {
        let steps = [
            (427_330.0, 90.68),
            (327_205.0, 90.74),
            (227_080.0, 90.85),
            (126_955.0, 90.72),
        ];
        let mut c = Chart::new("Accuracy vs parameters", "parameters", "test accuracy (%)");
        c.series
            .push(Series::new("after retraining", steps.to_vec(), Mark::Line));
        c.reference = Some(("unpruned".into(), 90.68));
        c.band = Some(("tolerance".into(), 90.26, 90.56));
        c.highlight = Some(("chosen: step 3".into(), steps[3]));
        let svg = c.to_svg().unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let t = texts(&svg);
        for needle in [
            "Accuracy vs parameters",
            "parameters",
            "test accuracy (%)",
            "unpruned",
            "tolerance",
            "chosen: step 3",
        ] {
            assert!(t.iter().any(|s| s == needle), "{needle} missing in {t:?}");
        }
        // one small mark per step, plus the legend's and the highlight's
        assert_eq!(svg.matches("<circle").count(), steps.len() + 1 + 1, "{svg}");
        // The y ticks of a 0.6-point range read differently (the hand-drawn chart printed 0.81 four times).
        let ticks: Vec<&String> = t.iter().filter(|s| s.parse::<f64>().is_ok()).collect();
        assert!(ticks.len() >= 4, "{t:?}");
        let distinct: std::collections::HashSet<_> = ticks.iter().collect();
        assert_eq!(distinct.len(), ticks.len(), "{ticks:?}");
        assert!(t.iter().any(|s| s.ends_with('k')), "parameters in thousands: {t:?}");
    }

    #[test]
    fn a_bar_chart_has_one_bar_and_one_value_per_entry_and_its_parity_line() {
        let entries = [
            ("lenet5-maxout training, 1 thread".to_string(), 0.92),
            ("lenet5-maxout inference, 1 thread".to_string(), 1.55),
            ("vgg16-maxout training, 2 threads".to_string(), 0.39),
        ];
        let chart: BarChart = serde_json::from_value(serde_json::json!({
            "title": "maxprune / PyTorch",
            "value_label": "speed ratio (x)",
            "bars": entries,
            "reference": ["parity", 1.0],
        }))
        .unwrap();
        let svg = chart.to_svg().unwrap();
        let t = texts(&svg);
        for needle in [
            "maxprune / PyTorch",
            "speed ratio (x)",
            "parity",
            "0.92x",
            "1.55x",
            "0.39x",
        ] {
            assert!(t.iter().any(|s| s == needle), "{needle} missing in {t:?}");
        }
        for (label, _) in &entries {
            assert!(t.iter().any(|s| s == label), "{label} missing in {t:?}");
        }
        // one bar per entry, in the first colour
        assert_eq!(svg.matches(r##"fill="#1F77B4""##).count(), entries.len(), "{svg}");
        let ticks: Vec<&String> = t.iter().filter(|s| s.parse::<f64>().is_ok()).collect();
        let distinct: std::collections::HashSet<_> = ticks.iter().collect();
        assert!(ticks.len() >= 4 && distinct.len() == ticks.len(), "{ticks:?}");
    }

    #[test]
    fn a_histogram_counts_every_value() {
        let h = histogram("scores", "score", "pieces", &[0.0, 0.5, 1.0, 1.0, f64::NAN], 2).unwrap();
        let t = texts(&h);
        assert!(
            t.iter().any(|s| s == "pieces") && t.iter().any(|s| s == "score"),
            "{t:?}"
        );
        // the background, then one bar per bin
        assert_eq!(h.matches("<rect").count(), 1 + 2, "{h}");
    }

    #[test]
    fn tick_formats_follow_the_spacing() {
        assert_eq!(tick_format(90.2, 90.9, 6)(&90.3), "90.3");
        assert_eq!(tick_format(90.5, 90.8, 6)(&90.55), "90.55");
        assert_eq!(tick_format(0.0, 1.0, 6)(&0.5), "0.5");
        assert_eq!(tick_format(100_000.0, 430_000.0, 6)(&127_000.0), "127k");
        assert_eq!(tick_format(0.0, 60.0, 6)(&20.0), "20");
    }
}
