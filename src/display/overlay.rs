//! The overlay: the camera image scaled to the panel, a box and a label per face, and a status
//! line with fps and face count. Sized for panels from 240×240 up. A face looking at the
//! screen (`[attention]`) gets a box three times as thick as one turned away.

use crate::face::FaceResult;
use embedded_graphics::mono_font::ascii::{FONT_10X20, FONT_6X10};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};
use image::RgbImage;

/// Figures shown in the status line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Status {
    /// Frames per second over the recent past; `None` until known.
    pub fps: Option<f32>,
    pub faces: usize,
}

pub const MALE_COLOUR: Rgb888 = Rgb888::new(80, 170, 255);
pub const FEMALE_COLOUR: Rgb888 = Rgb888::new(255, 90, 170);
/// Faces without an age/gender estimate (no model installed, or under `model.min_face_size`).
pub const FACE_COLOUR: Rgb888 = Rgb888::new(255, 210, 0);

/// How many times thicker the box of a face looking at the screen is.
pub const LOOKING_STROKE: u32 = 3;

/// How the frame maps onto the panel: uniform scale, centred, black bars on the sides.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fit {
    scale: f32,
    left: i32,
    top: i32,
    width: u32,
    height: u32,
}

/// The size a `frame`-sized picture takes on a `panel`-sized panel: a picture decoded at least
/// this large shows the same (the overlay samples it by nearest neighbour).
pub fn fitted_size(frame: (u32, u32), panel: (u32, u32)) -> (u32, u32) {
    if frame.0 == 0 || frame.1 == 0 {
        return frame;
    }
    let fit = Fit::new(frame, Size::new(panel.0, panel.1));
    (fit.width, fit.height)
}

impl Fit {
    fn new(frame: (u32, u32), panel: Size) -> Fit {
        let scale = (panel.width as f32 / frame.0 as f32).min(panel.height as f32 / frame.1 as f32);
        let width = ((frame.0 as f32 * scale).round() as u32).clamp(1, panel.width.max(1));
        let height = ((frame.1 as f32 * scale).round() as u32).clamp(1, panel.height.max(1));
        Fit {
            scale,
            left: ((panel.width - width) / 2) as i32,
            top: ((panel.height - height) / 2) as i32,
            width,
            height,
        }
    }

    fn point(&self, x: f32, y: f32) -> Point {
        Point::new(
            self.left + (x * self.scale).round() as i32,
            self.top + (y * self.scale).round() as i32,
        )
    }
}

/// Draws the whole overlay onto `target`.
pub fn draw_overlay<D>(
    target: &mut D,
    frame: &RgbImage,
    faces: &[FaceResult],
    status: &Status,
) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let panel = target.bounding_box().size;
    if panel.width == 0 || panel.height == 0 || frame.width() == 0 || frame.height() == 0 {
        return Ok(());
    }
    let fit = Fit::new(frame.dimensions(), panel);
    if fit.width != panel.width || fit.height != panel.height {
        target.clear(Rgb888::BLACK)?;
    }
    draw_frame(target, frame, &fit)?;

    let small_panel = panel.width < 480;
    let font: &MonoFont = if small_panel { &FONT_6X10 } else { &FONT_10X20 };
    let stroke = if small_panel { 1 } else { 2 };
    for result in faces {
        let colour = match &result.estimate {
            Some(estimate) => match estimate.gender {
                crate::model::Gender::Male => MALE_COLOUR,
                crate::model::Gender::Female => FEMALE_COLOUR,
            },
            None => FACE_COLOUR,
        };
        let f = &result.face;
        let top_left = fit.point(f.x, f.y);
        let bottom_right = fit.point(f.x + f.width, f.y + f.height);
        let size = Size::new(
            (bottom_right.x - top_left.x).max(1) as u32,
            (bottom_right.y - top_left.y).max(1) as u32,
        );
        // Drawn inside the box's edges, so a thick box covers no more of the picture around it.
        let width = if result.looking == Some(true) {
            LOOKING_STROKE * stroke
        } else {
            stroke
        };
        let mut style = PrimitiveStyle::with_stroke(colour, width);
        style.stroke_alignment = embedded_graphics::primitives::StrokeAlignment::Inside;
        Rectangle::new(top_left, size)
            .into_styled(style)
            .draw(target)?;
        let label = match &result.estimate {
            Some(estimate) => estimate.label(),
            None => "face".to_string(),
        };
        let label_height = font.character_size.height as i32 + 2;
        // Above the box when there is room, else just inside its top edge.
        let label_top = if top_left.y - label_height >= 0 {
            top_left.y - label_height
        } else {
            top_left.y
        };
        // The font keeps its size however small the face (a distant face's box may be
        // narrower than its label); the label is moved left to stay whole on the panel.
        let label_width = label_size(&label, font).width as i32;
        let label_left = top_left.x.min(panel.width as i32 - label_width).max(0);
        draw_label(
            target,
            &label,
            Point::new(label_left, label_top),
            font,
            colour,
            Rgb888::BLACK,
        )?;
    }

    let fps = match status.fps {
        Some(fps) => format!("{fps:.1} fps"),
        None => "-- fps".to_string(),
    };
    let line = format!(
        "{fps}  {} face{}",
        status.faces,
        if status.faces == 1 { "" } else { "s" }
    );
    draw_label(
        target,
        &line,
        Point::zero(),
        font,
        Rgb888::BLACK,
        Rgb888::WHITE,
    )
}

/// Size of a label's band: the text plus 2 px on each side.
fn label_size(text: &str, font: &MonoFont) -> Size {
    Size::new(
        font.character_size.width * text.chars().count() as u32 + 4,
        font.character_size.height + 2,
    )
}

/// Text on a filled background, so it stays readable over any picture.
fn draw_label<D>(
    target: &mut D,
    text: &str,
    top_left: Point,
    font: &MonoFont,
    background: Rgb888,
    foreground: Rgb888,
) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    Rectangle::new(top_left, label_size(text, font))
        .into_styled(PrimitiveStyle::with_fill(background))
        .draw(target)?;
    let style = MonoTextStyle::new(font, foreground);
    Text::with_baseline(text, top_left + Point::new(2, 1), style, Baseline::Top).draw(target)?;
    Ok(())
}

/// The frame, scaled to `fit` by nearest-neighbour sampling (cheap, and sharp enough for a
/// preview), streamed row by row into the target.
fn draw_frame<D>(target: &mut D, frame: &RgbImage, fit: &Fit) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let (fw, fh) = frame.dimensions();
    // Byte offsets of the sampled columns in a row, and each sampled row's bytes: no bounds
    // arithmetic per pixel (this runs for every pixel of the panel, every frame).
    let columns: Vec<usize> = (0..fit.width)
        .map(|x| 3 * (((x as f32 + 0.5) / fit.scale) as u32).min(fw - 1) as usize)
        .collect();
    let raw = frame.as_raw();
    let row_bytes = 3 * fw as usize;
    let area = Rectangle::new(
        Point::new(fit.left, fit.top),
        Size::new(fit.width, fit.height),
    );
    let colours = (0..fit.height).flat_map(|y| {
        let sy = (((y as f32 + 0.5) / fit.scale) as u32).min(fh - 1) as usize;
        let row = &raw[sy * row_bytes..(sy + 1) * row_bytes];
        columns.iter().map(move |&at| {
            let p = &row[at..at + 3];
            Rgb888::new(p[0], p[1], p[2])
        })
    });
    target.fill_contiguous(&area, colours)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::RgbCanvas;
    use crate::model::{AgeGender, Gender};
    use crate::vision::FaceBox;

    fn canvas_pixel(canvas: &RgbCanvas, x: u32, y: u32) -> [u8; 3] {
        canvas.image.get_pixel(x, y).0
    }

    fn grey_frame(w: u32, h: u32) -> RgbImage {
        RgbImage::from_pixel(w, h, image::Rgb([100, 100, 100]))
    }

    fn rgb(c: Rgb888) -> [u8; 3] {
        [c.r(), c.g(), c.b()]
    }

    #[test]
    fn fit_letterboxes_a_4_3_frame_on_a_square_panel() {
        let fit = Fit::new((640, 480), Size::new(240, 240));
        assert_eq!(
            (fit.width, fit.height, fit.left, fit.top),
            (240, 180, 0, 30)
        );
        assert_eq!(fit.point(320.0, 240.0), Point::new(120, 120));
    }

    #[test]
    fn box_edges_and_label_are_drawn_where_the_face_is() {
        let frame = grey_frame(640, 480);
        let face = FaceResult {
            track: None,
            looking: None,
            face: FaceBox {
                x: 200.0,
                y: 160.0,
                width: 160.0,
                height: 160.0,
                score: 5.0,
                landmarks: None,
            },
            estimate: Some(AgeGender {
                age: 34.0,
                age_low: 29.0,
                age_high: 39.0,
                gender: Gender::Female,
                gender_confidence: 0.9,
            }),
        };
        let mut canvas = RgbCanvas::new(320, 240);
        draw_overlay(
            &mut canvas,
            &frame,
            &[face],
            &Status {
                fps: Some(12.5),
                faces: 1,
            },
        )
        .unwrap();
        // 640x480 -> 320x240: scale 0.5, the box spans (100,80)-(180,160).
        let pink = rgb(FEMALE_COLOUR);
        assert_eq!(canvas_pixel(&canvas, 100, 120), pink, "left edge");
        assert_eq!(canvas_pixel(&canvas, 179, 120), pink, "right edge");
        assert_eq!(canvas_pixel(&canvas, 140, 80), pink, "top edge");
        assert_eq!(canvas_pixel(&canvas, 140, 159), pink, "bottom edge");
        assert_eq!(
            canvas_pixel(&canvas, 140, 120),
            [100, 100, 100],
            "inside is the picture"
        );
        // The label sits on a pink band above the box, 12 px high with the 6x10 font, and its
        // text is black: some pixels of the band are text.
        let band: Vec<[u8; 3]> = (68..80)
            .flat_map(|y| (100..100 + 12 * 6).map(move |x| (x, y)))
            .map(|(x, y)| canvas_pixel(&canvas, x, y))
            .collect();
        assert!(band.iter().filter(|&&p| p == pink).count() > band.len() / 2);
        assert!(band.contains(&[0, 0, 0]), "label text drawn");
        // The status line is white text on black at the top left.
        assert_eq!(canvas_pixel(&canvas, 0, 0), [0, 0, 0]);
        assert!((0..12)
            .flat_map(|y| (0..60).map(move |x| (x, y)))
            .any(|(x, y)| canvas_pixel(&canvas, x, y) == [255, 255, 255]));
    }

    /// A face looking at the screen has a box three times as thick, inside the same edges.
    #[test]
    fn a_face_looking_at_the_screen_gets_a_thick_box() {
        let frame = grey_frame(640, 480);
        let face = |looking| FaceResult {
            track: None,
            looking,
            face: FaceBox::new(200.0, 160.0, 160.0, 160.0, 5.0),
            estimate: None,
        };
        let status = Status::default();
        let draw = |looking| {
            let mut canvas = RgbCanvas::new(320, 240);
            draw_overlay(&mut canvas, &frame, &[face(looking)], &status).unwrap();
            canvas
        };
        let yellow = rgb(FACE_COLOUR);
        let grey = [100, 100, 100];
        // The box spans (100,80)-(180,160) on the panel; its left edge from x = 100.
        for looking in [None, Some(false)] {
            let canvas = draw(looking);
            assert_eq!(canvas_pixel(&canvas, 100, 120), yellow, "{looking:?}");
            assert_eq!(canvas_pixel(&canvas, 101, 120), grey, "{looking:?}");
            assert_eq!(canvas_pixel(&canvas, 99, 120), grey, "{looking:?}");
        }
        let canvas = draw(Some(true));
        assert_eq!(canvas_pixel(&canvas, 100, 120), yellow);
        assert_eq!(canvas_pixel(&canvas, 102, 120), yellow);
        assert_eq!(canvas_pixel(&canvas, 103, 120), grey);
        assert_eq!(canvas_pixel(&canvas, 99, 120), grey, "no wider outside");
    }

    /// A distant face (a 16 px box at the right edge of a 320×240 panel) keeps the full-size
    /// label, moved left so all of it is on the panel.
    #[test]
    fn a_small_face_at_the_edge_keeps_a_whole_readable_label() {
        let frame = grey_frame(320, 240);
        let face = FaceResult {
            track: None,
            looking: None,
            face: FaceBox {
                x: 302.0,
                y: 100.0,
                width: 16.0,
                height: 16.0,
                score: 0.9,
                landmarks: None,
            },
            estimate: None,
        };
        let mut canvas = RgbCanvas::new(320, 240);
        draw_overlay(&mut canvas, &frame, &[face], &Status::default()).unwrap();
        // "face" in the 6x10 font: a band 28 px wide and 12 high, ending at the panel's edge.
        let colour = rgb(FACE_COLOUR);
        let band = |x0: u32| {
            (88..100)
                .flat_map(move |y| (x0..320).map(move |x| (x, y)))
                .collect::<Vec<_>>()
        };
        let pixels: Vec<[u8; 3]> = band(292)
            .into_iter()
            .map(|(x, y)| canvas_pixel(&canvas, x, y))
            .collect();
        assert!(pixels.iter().filter(|&&p| p == colour).count() > pixels.len() / 2);
        assert!(pixels.contains(&[0, 0, 0]), "label text drawn");
        assert_ne!(canvas_pixel(&canvas, 291, 94), colour, "band starts at 292");
    }

    #[test]
    fn face_without_estimate_is_drawn_in_the_plain_colour() {
        let frame = grey_frame(240, 240);
        let face = FaceResult {
            track: None,
            looking: None,
            face: FaceBox {
                x: 50.0,
                y: 60.0,
                width: 100.0,
                height: 100.0,
                score: 3.0,
                landmarks: None,
            },
            estimate: None,
        };
        let mut canvas = RgbCanvas::new(240, 240);
        draw_overlay(&mut canvas, &frame, &[face], &Status::default()).unwrap();
        assert_eq!(canvas_pixel(&canvas, 50, 100), rgb(FACE_COLOUR));
        assert_eq!(canvas_pixel(&canvas, 149, 100), rgb(FACE_COLOUR));
    }

    #[test]
    fn bars_outside_the_picture_are_black() {
        let frame = grey_frame(640, 480);
        let mut canvas = RgbCanvas::new(240, 240);
        draw_overlay(&mut canvas, &frame, &[], &Status::default()).unwrap();
        assert_eq!(canvas_pixel(&canvas, 120, 20), [0, 0, 0], "top bar");
        assert_eq!(canvas_pixel(&canvas, 120, 120), [100, 100, 100]);
        assert_eq!(canvas_pixel(&canvas, 120, 225), [0, 0, 0], "bottom bar");
    }

    #[test]
    fn frame_is_scaled_by_nearest_neighbour() {
        let frame = RgbImage::from_fn(4, 2, |x, _| image::Rgb([x as u8 * 50, 0, 0]));
        let mut canvas = RgbCanvas::new(8, 4);
        let fit = Fit::new((4, 2), Size::new(8, 4));
        draw_frame(&mut canvas, &frame, &fit).unwrap();
        let row: Vec<u8> = (0..8).map(|x| canvas_pixel(&canvas, x, 3)[0]).collect();
        assert_eq!(row, vec![0, 0, 50, 50, 100, 100, 150, 150]);
    }
}
