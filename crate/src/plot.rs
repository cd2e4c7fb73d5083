//! Figures: line charts drawn with plotters to SVG, shown inline in evcxr notebooks and saved as
//! files. One chart type covers the paper's figures: several series (solid or dashed), shaded
//! bands (IQR), horizontal reference lines (2/η), a shaded x-window, optional log-scale y.
use crate::{Error, Result};
use plotters::prelude::*;
use plotters::series::DashedLineSeries;
use std::path::Path;

/// A series ready to draw: colour, dashed, label, points (y already transformed).
type DrawSeries = (usize, bool, String, Vec<(f64, f64)>);
/// A band ready to draw: colour, `(x, low, high)`.
type DrawBand = (usize, Vec<(f64, f64, f64)>);

/// A rendered figure (SVG text).
#[derive(Clone, Debug)]
pub struct Figure {
    /// The SVG document.
    pub svg: String,
}

impl Figure {
    /// Inline display in an evcxr notebook (called by the kernel for a cell's final value).
    pub fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT text/html\n<div>{}</div>\nEVCXR_END_CONTENT",
            self.svg
        );
    }
    /// Write the SVG to `path` (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::atomic::write_atomic(path, self.svg.as_bytes())
    }
}

/// Colours (the matplotlib "tab10" cycle, familiar to PyTorch users).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One line.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label (empty = not in the legend).
    pub label: String,
    /// `(x, y)` points; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
    /// Index into [`PALETTE`].
    pub color: usize,
    /// Dashed instead of solid.
    pub dashed: bool,
}

/// A shaded band between two curves on the same x grid (e.g. an IQR).
#[derive(Clone, Debug)]
pub struct Band {
    /// `(x, low, high)` points.
    pub points: Vec<(f64, f64, f64)>,
    /// Index into [`PALETTE`].
    pub color: usize,
}

/// A line chart.
#[derive(Clone, Debug, Default)]
pub struct LinePlot {
    /// Title above the chart.
    pub title: String,
    /// X-axis label.
    pub x_label: String,
    /// Y-axis label.
    pub y_label: String,
    /// Lines.
    pub series: Vec<Series>,
    /// Shaded bands, drawn under the lines.
    pub bands: Vec<Band>,
    /// Horizontal reference lines `(y, label, color)`, drawn dotted.
    pub hlines: Vec<(f64, String, usize)>,
    /// Vertical reference lines `(x, label, color)`, drawn dotted (e.g. 2/η on a spectrum).
    pub vlines: Vec<(f64, String, usize)>,
    /// A shaded x-window `(start, end, label)` (e.g. the window [t*, t**]).
    pub window: Option<(f64, f64, String)>,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// Fixed y range (otherwise from the data).
    pub y_range: Option<(f64, f64)>,
    /// Size in pixels (default 720 x 400).
    pub size: Option<(u32, u32)>,
    /// Draw a dot at every point (for curves of a few points).
    pub markers: bool,
}

/// Keep at most `max` points, evenly spaced, always including the last (long runs stay light).
pub fn thin<T: Clone>(points: &[T], max: usize) -> Vec<T> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let stride = points.len().div_ceil(max);
    let mut out: Vec<T> = points.iter().step_by(stride).cloned().collect();
    if !(points.len() - 1).is_multiple_of(stride) {
        out.push(points[points.len() - 1].clone());
    }
    out
}

impl LinePlot {
    /// A chart with a title and axis labels.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        LinePlot {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..Default::default()
        }
    }
    /// Add a line.
    pub fn line(
        mut self,
        label: impl Into<String>,
        points: Vec<(f64, f64)>,
        color: usize,
        dashed: bool,
    ) -> Self {
        self.series.push(Series {
            label: label.into(),
            points,
            color,
            dashed,
        });
        self
    }
    /// Add a band.
    pub fn band(mut self, points: Vec<(f64, f64, f64)>, color: usize) -> Self {
        self.bands.push(Band { points, color });
        self
    }
    /// Add a horizontal reference line.
    pub fn hline(mut self, y: f64, label: impl Into<String>, color: usize) -> Self {
        self.hlines.push((y, label.into(), color));
        self
    }
    /// Add a vertical reference line.
    pub fn vline(mut self, x: f64, label: impl Into<String>, color: usize) -> Self {
        self.vlines.push((x, label.into(), color));
        self
    }
    /// Shade an x-window.
    pub fn window(mut self, start: f64, end: f64, label: impl Into<String>) -> Self {
        self.window = Some((start, end, label.into()));
        self
    }
    /// Use a log-scale y axis.
    pub fn log_y(mut self) -> Self {
        self.log_y = true;
        self
    }
    /// Mark every point with a dot.
    pub fn markers(mut self) -> Self {
        self.markers = true;
        self
    }

    fn ty(&self, y: f64) -> Option<f64> {
        let v = if self.log_y {
            if y > 0.0 { y.log10() } else { return None }
        } else {
            y
        };
        v.is_finite().then_some(v)
    }

    /// Draw to SVG.
    pub fn render(&self) -> Result<Figure> {
        let size = self.size.unwrap_or((720, 400));
        let mut svg = String::new();
        self.draw(&mut svg, size)
            .map_err(|e| Error::Numerics(format!("plot '{}': {e}", self.title)))?;
        Ok(Figure { svg })
    }

    fn draw(
        &self,
        buf: &mut String,
        size: (u32, u32),
    ) -> std::result::Result<(), Box<dyn std::error::Error + '_>> {
        const MAX_POINTS: usize = 1500;
        let series: Vec<DrawSeries> = self
            .series
            .iter()
            .map(|s| {
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .filter(|p| p.0.is_finite())
                    .filter_map(|&(x, y)| self.ty(y).map(|y| (x, y)))
                    .collect();
                (s.color, s.dashed, s.label.clone(), thin(&pts, MAX_POINTS))
            })
            .collect();
        let bands: Vec<DrawBand> = self
            .bands
            .iter()
            .map(|b| {
                let pts: Vec<(f64, f64, f64)> = b
                    .points
                    .iter()
                    .filter_map(|&(x, lo, hi)| Some((x, self.ty(lo)?, self.ty(hi)?)))
                    .collect();
                (b.color, thin(&pts, MAX_POINTS))
            })
            .collect();
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        let mut see = |x: f64, y: f64| {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        };
        for (_, _, _, p) in &series {
            p.iter().for_each(|&(x, y)| see(x, y));
        }
        for (_, p) in &bands {
            p.iter().for_each(|&(x, lo, hi)| {
                see(x, lo);
                see(x, hi)
            });
        }
        let hl: Vec<f64> = self
            .hlines
            .iter()
            .filter_map(|(y, _, _)| self.ty(*y))
            .collect();
        if !x0.is_finite() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        for y in hl {
            (y0, y1) = (y0.min(y), y1.max(y));
        }
        for (x, _, _) in self.vlines.iter().filter(|v| v.0.is_finite()) {
            (x0, x1) = (x0.min(*x), x1.max(*x));
        }
        if let Some((a, b)) = self.y_range {
            (y0, y1) = (self.ty(a).unwrap_or(y0), self.ty(b).unwrap_or(y1));
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let pad = if y1 > y0 { 0.05 * (y1 - y0) } else { 0.5 };
        let (y0, y1) = (y0 - pad, y1 + pad);

        let root = SVGBackend::with_string(buf, size).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let log_y = self.log_y;
        let fmt_y = move |v: &f64| {
            if log_y {
                two_digits(10f64.powf(*v))
            } else {
                format!("{v:.3}")
            }
        };
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .y_label_formatter(&fmt_y)
            .light_line_style(WHITE.mix(0.0));
        mesh.draw()?;
        if let Some((a, b, label)) = &self.window {
            let style = RGBColor(120, 120, 120).mix(0.15).filled();
            chart
                .draw_series(std::iter::once(Rectangle::new([(*a, y0), (*b, y1)], style)))?
                .label(label.clone())
                .legend(move |(x, y)| {
                    Rectangle::new(
                        [(x, y - 5), (x + 16, y + 5)],
                        RGBColor(120, 120, 120).mix(0.3).filled(),
                    )
                });
        }
        for (c, pts) in &bands {
            let col = PALETTE[c % PALETTE.len()];
            let mut poly: Vec<(f64, f64)> = pts.iter().map(|&(x, lo, _)| (x, lo)).collect();
            poly.extend(pts.iter().rev().map(|&(x, _, hi)| (x, hi)));
            if poly.len() >= 3 {
                chart.draw_series(std::iter::once(Polygon::new(poly, col.mix(0.18).filled())))?;
            }
        }
        for (y, label, c) in &self.hlines {
            if let Some(y) = self.ty(*y) {
                let col = PALETTE[c % PALETTE.len()];
                let style = ShapeStyle::from(&col).stroke_width(1);
                chart
                    .draw_series(DashedLineSeries::new(vec![(x0, y), (x1, y)], 2, 4, style))?
                    .label(label.clone())
                    .legend(move |(x, yy)| PathElement::new(vec![(x, yy), (x + 16, yy)], col));
            }
        }
        for (x, label, c) in self.vlines.iter().filter(|v| v.0.is_finite()) {
            let col = PALETTE[c % PALETTE.len()];
            let style = ShapeStyle::from(&col).stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(vec![(*x, y0), (*x, y1)], 2, 4, style))?
                .label(label.clone())
                .legend(move |(x, yy)| PathElement::new(vec![(x, yy), (x + 16, yy)], col));
        }
        for (c, dashed, label, pts) in &series {
            let col = PALETTE[c % PALETTE.len()];
            let style = ShapeStyle::from(&col).stroke_width(2);
            let anno = if *dashed {
                chart.draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))?
            } else {
                chart.draw_series(LineSeries::new(pts.clone(), style))?
            };
            if !label.is_empty() {
                anno.label(label.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(2))
                });
            }
            if self.markers {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, col.filled())))?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        root.present()?;
        Ok(())
    }
}

/// `x` to two significant digits: plain between 0.001 and 9,999, scientific outside. (Log-axis
/// ticks fall at arbitrary values: one digit, as `{:.0e}` gives, can misplace a curve by 20 %.)
fn two_digits(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let e = x.abs().log10().floor() as i32;
    if (-3..4).contains(&e) {
        format!("{:.*}", (1 - e).max(0) as usize, x)
    } else {
        format!("{x:.1e}")
    }
}

/// Several figures side by side (shown together in a notebook cell).
#[derive(Clone, Debug)]
pub struct Row(pub Vec<Figure>);

impl Row {
    /// Inline display in an evcxr notebook.
    pub fn evcxr_display(&self) {
        let inner: String = self
            .0
            .iter()
            .map(|f| format!("<div style=\"display:inline-block\">{}</div>", f.svg))
            .collect();
        println!("EVCXR_BEGIN_CONTENT text/html\n<div>{inner}</div>\nEVCXR_END_CONTENT");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_svg_with_labels() {
        let f = LinePlot::new("sharpness", "step", "λ_max")
            .line(
                "η = 0.1",
                vec![(0.0, 1.0), (1.0, 2.0), (2.0, f64::NAN)],
                0,
                false,
            )
            .line("stable", vec![(0.0, 1.5), (2.0, 1.0)], 1, true)
            .band(vec![(0.0, 0.5, 1.5), (2.0, 0.8, 1.2)], 0)
            .hline(2.0, "2/η", 3)
            .vline(1.75, "t**", 2)
            .window(0.5, 1.5, "window")
            .render()
            .unwrap();
        assert!(f.svg.starts_with("<svg"));
        for s in ["sharpness", "step", "2/η", "t**", "window", "stable"] {
            assert!(f.svg.contains(s), "missing {s}");
        }
        let log = LinePlot::new("g", "t", "|g|")
            .line("a", vec![(0.0, 1e-3), (1.0, 1.0), (2.0, 0.0)], 0, false)
            .log_y()
            .render()
            .unwrap();
        // Ticks at 10^(k/2): 0.0010, 0.0032, …, 0.32, 1.0.
        for tick in ["0.0032", "0.32", "1.0"] {
            assert!(log.svg.contains(&format!("\n{tick}\n")), "log tick {tick}");
        }
        assert_eq!(two_digits(2.818), "2.8");
        assert_eq!(two_digits(0.0631), "0.063");
        assert_eq!(two_digits(316.2), "316");
        assert_eq!(two_digits(1.5e-5), "1.5e-5");
    }

    #[test]
    fn thinning_keeps_ends() {
        let v: Vec<usize> = (0..10_001).collect();
        let t = thin(&v, 1000);
        assert!(t.len() <= 1001);
        assert_eq!(t[0], 0);
        assert_eq!(*t.last().unwrap(), 10_000);
    }
}
