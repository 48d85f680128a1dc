//! Recorded-like camera streams made from the built-in demo frames, for the replay tests and
//! `agecam bench --stream`: a person standing for 10 s facing the screen, two people arriving
//! and leaving, a person walking through, a person walking up to the kiosk from far away, and
//! a person walking past in profile. Frames are made as they are asked for (no files), at
//! 30 fps, and each scene ends with a few empty seconds so every visit in it ends.

use super::stills::demo_image;
use super::{CaptureError, Frame, FrameSource};
use image::{Rgb, RgbImage};
use std::time::Instant;

/// Frames per second of every scene.
pub const SCENE_FPS: u32 = 30;

/// Width and height of every scene's frames (the demo frames' size).
const FRAME_SIZE: (u32, u32) = (640, 480);

/// Empty frames after the people have gone: longer than the default visit gap (3 s).
const EMPTY_TAIL: u32 = 100;

/// The grey the scenes are set against where no photo covers the frame.
const BACKDROP: Rgb<u8> = Rgb([118, 118, 118]);

/// A replayed scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scene {
    /// One person standing in front of the kiosk for 10 s, swaying a few pixels.
    Standing,
    /// One person arrives, a second joins 3 s later, the first leaves 4 s after that, then
    /// the second.
    TwoPeople,
    /// One person walking across the view in 4 s.
    WalkingThrough,
    /// One person walking straight up to the kiosk in 6 s, from six times as far as they
    /// end up (their face from ~1/6 of its final height), then standing there 2 s.
    Approaching,
    /// One person walking across the view in 4 s with the head turned about 70° to their
    /// right, never looking at the screen (scikit-image's "cameraman", `tests/data/faces`).
    PassingInProfile,
}

/// The photo of [`Scene::PassingInProfile`]: a man in three-quarter profile (CC0,
/// see `tests/data/SOURCES.md`).
const PROFILE_PHOTO: &[u8] =
    include_bytes!("../../tests/data/faces/cameraman_three_quarter_profile.png");

/// Seconds the approaching person walks, then stands.
const APPROACH_SECONDS: u32 = 6;
const APPROACH_STAND_SECONDS: u32 = 2;
/// How many times further away the approaching person starts than they end.
const APPROACH_FROM: f32 = 6.0;

impl Scene {
    /// The scenes `bench --stream` runs unless told which (its figures in docs/performance.md
    /// are over these four; [`Scene::PassingInProfile`] is asked for by name).
    pub const ALL: [Scene; 4] = [
        Scene::Standing,
        Scene::TwoPeople,
        Scene::WalkingThrough,
        Scene::Approaching,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scene::Standing => "standing",
            Scene::TwoPeople => "two-people",
            Scene::WalkingThrough => "walking-through",
            Scene::Approaching => "approaching",
            Scene::PassingInProfile => "passing-in-profile",
        }
    }

    /// People in the scene: the visits it holds.
    pub fn people(self) -> usize {
        match self {
            Scene::TwoPeople => 2,
            Scene::Standing
            | Scene::WalkingThrough
            | Scene::Approaching
            | Scene::PassingInProfile => 1,
        }
    }

    /// Frames with people in view, then [`EMPTY_TAIL`] empty ones.
    pub fn frame_count(self) -> u32 {
        let busy = match self {
            Scene::Standing => 10 * SCENE_FPS,
            Scene::TwoPeople => 10 * SCENE_FPS,
            Scene::WalkingThrough | Scene::PassingInProfile => 4 * SCENE_FPS,
            Scene::Approaching => (APPROACH_SECONDS + APPROACH_STAND_SECONDS) * SCENE_FPS,
        };
        busy + EMPTY_TAIL
    }

    /// The scene as a frame source.
    pub fn frames(self) -> SceneFrames {
        let photo = match self {
            Scene::Standing | Scene::WalkingThrough | Scene::Approaching => {
                demo_image("demo_frame_1.jpg")
            }
            Scene::TwoPeople => demo_image("demo_frame_3.jpg"),
            Scene::PassingInProfile => image::load_from_memory(PROFILE_PHOTO)
                .ok()
                .map(|i| i.to_rgb8()),
        };
        SceneFrames {
            scene: self,
            photo: photo.expect("the scenes' photos are built in and decode"),
            next: 0,
        }
    }

    /// Frame `i` of the scene drawn from `photo` (a 640×480 demo frame, or the profile photo).
    fn draw(self, photo: &RgbImage, i: u32) -> RgbImage {
        let (w, h) = FRAME_SIZE;
        let mut frame = RgbImage::from_pixel(w, h, BACKDROP);
        match self {
            Scene::Standing if i < 10 * SCENE_FPS => {
                // A slow sway of a few pixels, as a person standing still makes.
                const SWAY: [i64; 8] = [0, 1, 2, 3, 2, 1, 0, -1];
                let (dx, dy) = (SWAY[(i / 3) as usize % 8], SWAY[(i / 5 + 2) as usize % 8]);
                paste(&mut frame, photo, dx, dy, 0..w);
            }
            Scene::TwoPeople if i < 10 * SCENE_FPS => {
                // The demo frame's left person stands in its left half, the right one in its
                // right half.
                let half = w / 2;
                if i < 7 * SCENE_FPS {
                    paste(&mut frame, photo, 0, 0, 0..half);
                }
                if i >= 3 * SCENE_FPS {
                    paste(&mut frame, photo, 0, 0, half..w);
                }
            }
            Scene::WalkingThrough if i < 4 * SCENE_FPS => {
                // From the left edge to the right, 4 px a frame.
                let dx = -220 + 4 * i as i64;
                paste(&mut frame, photo, dx, 0, 0..w);
            }
            Scene::PassingInProfile if i < 4 * SCENE_FPS => {
                // The 512×512 photo's face (at x 192–257) from the left edge to the right,
                // 4 px a frame, the way it faces.
                let dx = -180 + 4 * i as i64;
                paste(&mut frame, photo, dx, -20, 0..photo.width());
            }
            Scene::Approaching if i < (APPROACH_SECONDS + APPROACH_STAND_SECONDS) * SCENE_FPS => {
                // At a steady pace from APPROACH_FROM times the final distance: the apparent
                // size is final distance / distance, about the frame's centre.
                let t = (i as f32 / (APPROACH_SECONDS * SCENE_FPS) as f32).min(1.0);
                let scale = 1.0 / (APPROACH_FROM - (APPROACH_FROM - 1.0) * t);
                let (sw, sh) = (
                    ((w as f32 * scale).round() as u32).max(1),
                    ((h as f32 * scale).round() as u32).max(1),
                );
                let small =
                    image::imageops::resize(photo, sw, sh, image::imageops::FilterType::Triangle);
                let (dx, dy) = (i64::from((w - sw) / 2), i64::from((h - sh) / 2));
                paste(&mut frame, &small, dx, dy, 0..sw);
            }
            _ => {}
        }
        frame
    }
}

/// Copies `photo`'s columns `columns`, shifted by (`dx`, `dy`), onto `frame`.
fn paste(frame: &mut RgbImage, photo: &RgbImage, dx: i64, dy: i64, columns: std::ops::Range<u32>) {
    let (w, h) = frame.dimensions();
    for y in 0..photo.height() {
        let ty = y as i64 + dy;
        if !(0..h as i64).contains(&ty) {
            continue;
        }
        for x in columns.clone() {
            let tx = x as i64 + dx;
            if (0..w as i64).contains(&tx) {
                frame.put_pixel(tx as u32, ty as u32, *photo.get_pixel(x, y));
            }
        }
    }
}

/// The frames of one [`Scene`], made on demand.
pub struct SceneFrames {
    scene: Scene,
    photo: RgbImage,
    next: u32,
}

impl FrameSource for SceneFrames {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        if self.next >= self.scene.frame_count() {
            return Ok(None);
        }
        let i = self.next;
        self.next += 1;
        Ok(Some(Frame {
            image: self.scene.draw(&self.photo, i),
            seq: u64::from(i),
            captured: Instant::now(),
            origin: format!("scene {} frame {i}", self.scene.name()),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "replayed scene {} ({} frames at {SCENE_FPS} fps)",
            self.scene.name(),
            self.scene.frame_count()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_have_their_length_and_end_empty() {
        for scene in Scene::ALL.into_iter().chain([Scene::PassingInProfile]) {
            let mut frames = scene.frames();
            let mut n = 0;
            let mut last = None;
            while let Some(frame) = frames.next_frame().unwrap() {
                assert_eq!(frame.image.dimensions(), (640, 480));
                last = Some(frame.image);
                n += 1;
            }
            assert_eq!(n, scene.frame_count(), "{}", scene.name());
            let last = last.unwrap();
            assert!(last.pixels().all(|p| *p == BACKDROP), "{}", scene.name());
        }
    }

    #[test]
    fn the_approaching_person_grows_from_a_sixth_to_full_size() {
        let scene = Scene::Approaching;
        let photo = demo_image("demo_frame_1.jpg").unwrap();
        let width_shown = |i: u32| {
            let frame = scene.draw(&photo, i);
            (0..640)
                .filter(|&x| frame.get_pixel(x, 240) != &BACKDROP)
                .count()
        };
        assert!((100..=115).contains(&width_shown(0)), "{}", width_shown(0));
        assert!(width_shown(90) > width_shown(0) && width_shown(180) == 640);
        assert_eq!(width_shown(200), 640);
    }

    #[test]
    fn two_people_arrive_and_leave_one_half_at_a_time() {
        let scene = Scene::TwoPeople;
        let photo = demo_image("demo_frame_3.jpg").unwrap();
        let shows = |i: u32, x: u32| scene.draw(&photo, i).get_pixel(x, 200) != &BACKDROP;
        // Left person only, both, right person only.
        assert!(shows(10, 140) && !shows(10, 480));
        assert!(shows(150, 140) && shows(150, 480));
        assert!(!shows(250, 140) && shows(250, 480));
    }
}
