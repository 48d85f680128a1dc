//! Server-side charts: one line per series over the periods, drawn as an SVG string by
//! plotters' SVG backend (no JavaScript, no font files: text is SVG `<text>`).

use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::*;

/// Line colours, distinguishable on white and in greyscale order.
const COLOURS: [RGBColor; 10] = [
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

/// Why a chart could not be drawn. Drawing into a String cannot fail on I/O; anything else
/// (a layout plotters refuses) is a bug worth showing on the page.
#[derive(Debug, thiserror::Error)]
#[error("chart {title}: {error}")]
pub struct ChartError {
    pub title: String,
    pub error: DrawingAreaErrorKind<std::io::Error>,
}

/// A chart of `series` (label, one value per x label) over `x_labels`, counting `y_desc`
/// (e.g. "visits"); an SVG document.
pub fn lines(
    title: &str,
    y_desc: &str,
    x_labels: &[String],
    series: &[(String, Vec<i64>)],
) -> Result<String, ChartError> {
    let mut svg = String::new();
    draw(&mut svg, title, y_desc, x_labels, series).map_err(|error| ChartError {
        title: title.to_string(),
        error,
    })?;
    Ok(svg)
}

fn draw(
    out: &mut String,
    title: &str,
    y_desc: &str,
    x_labels: &[String],
    series: &[(String, Vec<i64>)],
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let root = SVGBackend::with_string(out, (600, 320)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = x_labels.len().max(1);
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let y_top = max + (max / 10).max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0i64..y_top)?;
    let label_every = n.div_ceil(8);
    chart
        .configure_mesh()
        .x_labels(n.min(8))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            let i = i as usize;
            if !i.is_multiple_of(label_every) {
                return String::new();
            }
            x_labels.get(i).cloned().unwrap_or_default()
        })
        .y_desc(y_desc)
        .disable_x_mesh()
        .light_line_style(WHITE)
        .draw()?;
    for (k, (label, values)) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let points: Vec<(f64, i64)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as f64, v))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
        chart.draw_series(PointSeries::of_element(
            points,
            3,
            colour.filled(),
            &|c, s, st| Circle::new(c, s, st),
        ))?;
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_svg_with_its_title_labels_and_series() {
        let x: Vec<String> = vec!["2026-11-23".into(), "2026-11-24".into()];
        let svg = lines(
            "visits by age",
            "visits",
            &x,
            &[("25-34".into(), vec![3, 9]), ("65+".into(), vec![0, 5])],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        for text in ["visits by age", "2026-11-23", "25-34", "65+", "</svg>"] {
            assert!(svg.contains(text), "{text} missing");
        }
        let empty = lines("nothing", "visits", &[], &[]).unwrap();
        assert!(empty.starts_with("<svg"));
    }
}
