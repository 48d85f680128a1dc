//! Charts for evaluation reports — line charts (ROC curves, training history) and confusion
//! matrices — drawn with `embedded-graphics` onto the same RGB canvas the PNG display target
//! uses, so the host tool needs no plotting library (and no system fonts) for its PNGs.

use agecam::display::RgbCanvas;
use embedded_graphics::mono_font::ascii::{FONT_6X10, FONT_7X13_BOLD};
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};
use image::RgbImage;

/// Colours for successive series: distinguishable, and readable on white.
pub const PALETTE: [Rgb888; 5] = [
    Rgb888::new(31, 119, 180),
    Rgb888::new(214, 39, 40),
    Rgb888::new(44, 160, 44),
    Rgb888::new(148, 103, 189),
    Rgb888::new(255, 127, 14),
];

const WHITE: Rgb888 = Rgb888::new(255, 255, 255);
const INK: Rgb888 = Rgb888::new(30, 30, 30);
const GRID: Rgb888 = Rgb888::new(225, 225, 225);

/// One named line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart; ranges default to the data's extent.
#[derive(Debug, Clone, Default)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    /// Draw the y = x diagonal (the chance line of a ROC curve).
    pub diagonal: bool,
}

/// Plot area inside the picture: margins leave room for the title, tick labels and legend.
struct Frame {
    left: i32,
    top: i32,
    right: i32,
    bottom: i32,
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn to_px(&self, (x, y): (f64, f64)) -> Point {
        let fx = (x - self.x.0) / (self.x.1 - self.x.0);
        let fy = (y - self.y.0) / (self.y.1 - self.y.0);
        Point::new(
            self.left + (fx * (self.right - self.left) as f64).round() as i32,
            self.bottom - (fy * (self.bottom - self.top) as f64).round() as i32,
        )
    }
}

fn extent(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

fn tick_label(v: f64, span: f64) -> String {
    if span >= 20.0 {
        format!("{v:.0}")
    } else if span >= 2.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn text(canvas: &mut RgbCanvas, s: &str, at: Point, align: Alignment, bold: bool) {
    let style = TextStyleBuilder::new()
        .alignment(align)
        .baseline(Baseline::Middle)
        .build();
    let font = if bold { &FONT_7X13_BOLD } else { &FONT_6X10 };
    let _ = Text::with_text_style(s, at, MonoTextStyle::new(font, INK), style).draw(canvas);
}

/// Renders a line chart as a `width`×`height` picture.
pub fn line_chart(chart: &LineChart, width: u32, height: u32) -> RgbImage {
    let mut canvas = RgbCanvas::new(width, height);
    let _ = canvas.clear(WHITE);
    let all = || chart.series.iter().flat_map(|s| s.points.iter().copied());
    let frame = Frame {
        left: 56,
        top: 30,
        right: width as i32 - 16,
        bottom: height as i32 - 40,
        x: chart.x_range.unwrap_or_else(|| extent(all().map(|p| p.0))),
        y: chart.y_range.unwrap_or_else(|| extent(all().map(|p| p.1))),
    };
    text(
        &mut canvas,
        &chart.title,
        Point::new(width as i32 / 2, 12),
        Alignment::Center,
        true,
    );
    // Grid and tick labels: five intervals per axis.
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let xv = frame.x.0 + f * (frame.x.1 - frame.x.0);
        let yv = frame.y.0 + f * (frame.y.1 - frame.y.0);
        let px = frame.to_px((xv, frame.y.0));
        let py = frame.to_px((frame.x.0, yv));
        let grid = PrimitiveStyle::with_stroke(GRID, 1);
        let _ = Line::new(Point::new(px.x, frame.top), Point::new(px.x, frame.bottom))
            .into_styled(grid)
            .draw(&mut canvas);
        let _ = Line::new(Point::new(frame.left, py.y), Point::new(frame.right, py.y))
            .into_styled(grid)
            .draw(&mut canvas);
        let xs = tick_label(xv, frame.x.1 - frame.x.0);
        let ys = tick_label(yv, frame.y.1 - frame.y.0);
        text(
            &mut canvas,
            &xs,
            Point::new(px.x, frame.bottom + 9),
            Alignment::Center,
            false,
        );
        text(
            &mut canvas,
            &ys,
            Point::new(frame.left - 4, py.y),
            Alignment::Right,
            false,
        );
    }
    let axis = PrimitiveStyle::with_stroke(INK, 1);
    let _ = Rectangle::with_corners(
        Point::new(frame.left, frame.top),
        Point::new(frame.right, frame.bottom),
    )
    .into_styled(axis)
    .draw(&mut canvas);
    text(
        &mut canvas,
        &chart.x_label,
        Point::new((frame.left + frame.right) / 2, height as i32 - 12),
        Alignment::Center,
        false,
    );
    text(
        &mut canvas,
        &chart.y_label,
        Point::new(4, 20),
        Alignment::Left,
        false,
    );
    if chart.diagonal {
        let (lo, hi) = (frame.x.0.max(frame.y.0), frame.x.1.min(frame.y.1));
        let _ = Line::new(frame.to_px((lo, lo)), frame.to_px((hi, hi)))
            .into_styled(PrimitiveStyle::with_stroke(Rgb888::new(150, 150, 150), 1))
            .draw(&mut canvas);
    }
    for (i, s) in chart.series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let style = PrimitiveStyle::with_stroke(colour, 2);
        for pair in s.points.windows(2) {
            let _ = Line::new(frame.to_px(pair[0]), frame.to_px(pair[1]))
                .into_styled(style)
                .draw(&mut canvas);
        }
        if s.points.len() == 1 {
            let p = frame.to_px(s.points[0]);
            let _ = Rectangle::new(p - Point::new(2, 2), Size::new(5, 5))
                .into_styled(PrimitiveStyle::with_fill(colour))
                .draw(&mut canvas);
        }
        // Legend, top-left inside the plot.
        let y = frame.top + 10 + 14 * i as i32;
        let _ = Line::new(
            Point::new(frame.left + 8, y),
            Point::new(frame.left + 26, y),
        )
        .into_styled(style)
        .draw(&mut canvas);
        text(
            &mut canvas,
            &s.name,
            Point::new(frame.left + 32, y),
            Alignment::Left,
            false,
        );
    }
    canvas.image
}

/// Renders a confusion matrix (`counts[true][predicted]`) with each cell shaded by its share
/// of the true class's row, and the count and that share written in it.
pub fn confusion_matrix(title: &str, labels: &[&str], counts: &[Vec<usize>]) -> RgbImage {
    let n = labels.len();
    let cell = 90i32;
    let (left, top) = (90i32, 50i32);
    let width = (left + cell * n as i32 + 20) as u32;
    let height = (top + cell * n as i32 + 40) as u32;
    let mut canvas = RgbCanvas::new(width, height);
    let _ = canvas.clear(WHITE);
    text(
        &mut canvas,
        title,
        Point::new(width as i32 / 2, 12),
        Alignment::Center,
        true,
    );
    text(
        &mut canvas,
        "predicted ->",
        Point::new(left + cell * n as i32 / 2, 30),
        Alignment::Center,
        false,
    );
    text(
        &mut canvas,
        "true",
        Point::new(8, top - 10),
        Alignment::Left,
        false,
    );
    for (t, row) in counts.iter().enumerate().take(n) {
        let total: usize = row.iter().sum();
        text(
            &mut canvas,
            labels[t],
            Point::new(left - 6, top + cell * t as i32 + cell / 2),
            Alignment::Right,
            false,
        );
        for (p, &count) in row.iter().enumerate().take(n) {
            let share = if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            };
            let shade = |full: u8| (255.0 - share * (255.0 - full as f64)).round() as u8;
            let fill = Rgb888::new(shade(8), shade(69), shade(148));
            let corner = Point::new(left + cell * p as i32, top + cell * t as i32);
            let _ = Rectangle::new(corner, Size::new(cell as u32, cell as u32))
                .into_styled(
                    embedded_graphics::primitives::PrimitiveStyleBuilder::new()
                        .fill_color(fill)
                        .stroke_color(INK)
                        .stroke_width(1)
                        .build(),
                )
                .draw(&mut canvas);
            let ink = if share > 0.5 { WHITE } else { INK };
            let centre = corner + Point::new(cell / 2, cell / 2);
            let style = TextStyleBuilder::new()
                .alignment(Alignment::Center)
                .baseline(Baseline::Middle)
                .build();
            let _ = Text::with_text_style(
                &count.to_string(),
                centre - Point::new(0, 8),
                MonoTextStyle::new(&FONT_7X13_BOLD, ink),
                style,
            )
            .draw(&mut canvas);
            let _ = Text::with_text_style(
                &format!("{:.1}%", 100.0 * share),
                centre + Point::new(0, 10),
                MonoTextStyle::new(&FONT_6X10, ink),
                style,
            )
            .draw(&mut canvas);
        }
    }
    for (p, label) in labels.iter().enumerate() {
        text(
            &mut canvas,
            label,
            Point::new(
                left + cell * p as i32 + cell / 2,
                top + cell * n as i32 + 12,
            ),
            Alignment::Center,
            false,
        );
    }
    canvas.image
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_colour_near(img: &RgbImage, x: i32, y: i32, c: Rgb888) -> bool {
        (-3..=3).any(|dx| {
            (-3..=3).any(|dy| {
                let (px, py) = (x + dx, y + dy);
                px >= 0
                    && py >= 0
                    && (px as u32) < img.width()
                    && (py as u32) < img.height()
                    && img.get_pixel(px as u32, py as u32).0 == [c.r(), c.g(), c.b()]
            })
        })
    }

    #[test]
    fn line_chart_puts_points_where_the_axes_say() {
        let chart = LineChart {
            title: "t".into(),
            series: vec![Series {
                name: "a".into(),
                points: vec![(0.0, 0.0), (1.0, 1.0)],
            }],
            x_range: Some((0.0, 1.0)),
            y_range: Some((0.0, 1.0)),
            ..Default::default()
        };
        let img = line_chart(&chart, 400, 300);
        // Plot area is x 56..384, y 30..260: the midpoint of the line is at (220, 145).
        assert!(has_colour_near(&img, 220, 145, PALETTE[0]));
        // The opposite corner of the plot area holds no series colour.
        assert!(!has_colour_near(&img, 370, 250, PALETTE[0]));
    }

    #[test]
    fn confusion_cells_are_darker_for_larger_shares() {
        let img = confusion_matrix("c", &["A", "B"], &[vec![9, 1], vec![5, 5]]);
        // Sample each cell near its top-left corner (away from the text).
        let at = |t: u32, p: u32| img.get_pixel(90 + 90 * p + 6, 50 + 90 * t + 6).0[0];
        assert!(at(0, 0) < at(1, 0), "90 % is darker than 50 %");
        assert!(at(1, 0) < at(0, 1), "50 % is darker than 10 %");
        assert_eq!(at(1, 0), at(1, 1));
    }
}
