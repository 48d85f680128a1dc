//! Tiled detection: any [`FaceDetector`] run on the whole frame and on a grid of overlapping
//! tiles cut from it at full resolution, so a detector with a small fixed input (BlazeFace's
//! 128×128) sees small, distant faces magnified. Boxes found in a tile are shifted back to
//! frame coordinates and duplicates (a face seen whole and in one or more tiles) are merged
//! by non-maximum suppression, keeping the higher score.
//!
//! The inner detector's settings still apply per call: its `min_face_size` is in tile pixels,
//! which are frame pixels (tiles are not rescaled), and its `max_faces` limits each call.
//! The daemon uses it when `detector.tiles = [columns, rows]` is set (2×2 tiles overlapping
//! by 25 % plus the whole frame); `agecam-host det-bench` measures it.

use super::{largest_faces, merge_boxes, FaceBox, FaceDetector};
use image::RgbImage;

/// Overlap (IoU) above which two boxes are the same face.
pub const MERGE_IOU: f32 = 0.3;

/// How a frame is cut into tiles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileGrid {
    pub cols: u32,
    pub rows: u32,
    /// Share of a tile's side that it shares with its neighbour (0 ≤ overlap < 1).
    pub overlap: f32,
    /// Also run the inner detector on the whole frame (for faces larger than a tile).
    pub full_frame: bool,
}

impl Default for TileGrid {
    /// 2×2 tiles overlapping by 25 %, plus the whole frame.
    fn default() -> Self {
        TileGrid {
            cols: 2,
            rows: 2,
            overlap: 0.25,
            full_frame: true,
        }
    }
}

/// A rectangle of the frame, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// `n` spans (start, length) of equal length that cover `0..len`, neighbours sharing about
/// `overlap` of a span; the first starts at 0 and the last ends at `len`.
fn spans(len: u32, n: u32, overlap: f32) -> Vec<(u32, u32)> {
    let n = n.max(1);
    if n == 1 || len == 0 {
        return vec![(0, len)];
    }
    let overlap = overlap.clamp(0.0, 0.95);
    let size = (len as f32 / (n as f32 - (n - 1) as f32 * overlap)).ceil() as u32;
    let size = size.clamp(1, len);
    let step = (len - size) as f32 / (n - 1) as f32;
    (0..n)
        .map(|i| {
            let start = ((i as f32 * step).round() as u32).min(len - size);
            (start, size)
        })
        .collect()
}

impl TileGrid {
    /// The tiles of a `width`×`height` frame, row by row (the whole frame not included).
    pub fn tiles(&self, width: u32, height: u32) -> Vec<Tile> {
        let xs = spans(width, self.cols, self.overlap);
        let ys = spans(height, self.rows, self.overlap);
        ys.iter()
            .flat_map(|&(y, h)| {
                xs.iter().map(move |&(x, w)| Tile {
                    x,
                    y,
                    width: w,
                    height: h,
                })
            })
            .collect()
    }
}

/// Runs an inner detector on the whole frame and on overlapping tiles; see the module docs.
pub struct TiledDetector {
    inner: Box<dyn FaceDetector>,
    grid: TileGrid,
    max_faces: usize,
}

impl TiledDetector {
    pub fn new(inner: Box<dyn FaceDetector>, grid: TileGrid) -> TiledDetector {
        TiledDetector {
            inner,
            grid,
            max_faces: usize::MAX,
        }
    }

    /// Keep at most `max` faces per frame (largest first) after merging.
    pub fn with_max_faces(mut self, max: usize) -> TiledDetector {
        self.max_faces = max;
        self
    }

    pub fn grid(&self) -> TileGrid {
        self.grid
    }
}

impl FaceDetector for TiledDetector {
    fn detect(&mut self, frame: &RgbImage) -> Vec<FaceBox> {
        let (width, height) = frame.dimensions();
        let mut boxes = Vec::new();
        if self.grid.full_frame {
            boxes.extend(self.inner.detect(frame));
        }
        for tile in self.grid.tiles(width, height) {
            if tile.width == 0 || tile.height == 0 {
                continue;
            }
            let whole = tile.x == 0 && tile.y == 0 && tile.width == width && tile.height == height;
            if whole && self.grid.full_frame {
                continue; // already run on the whole frame
            }
            let cut = image::imageops::crop_imm(frame, tile.x, tile.y, tile.width, tile.height)
                .to_image();
            boxes.extend(
                self.inner
                    .detect(&cut)
                    .into_iter()
                    .map(|b| b.translated(tile.x as f32, tile.y as f32)),
            );
        }
        largest_faces(merge_boxes(boxes, MERGE_IOU), self.max_faces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f32, y: f32, w: f32, h: f32, score: f32) -> FaceBox {
        FaceBox {
            x,
            y,
            width: w,
            height: h,
            score,
            landmarks: None,
        }
    }

    #[test]
    fn tiles_cover_the_frame_with_the_asked_overlap() {
        for (w, h) in [(640, 480), (1280, 720), (101, 37), (1, 1)] {
            for (cols, rows) in [(1, 1), (2, 2), (3, 2), (4, 3)] {
                let grid = TileGrid {
                    cols,
                    rows,
                    overlap: 0.25,
                    full_frame: true,
                };
                let tiles = grid.tiles(w, h);
                assert_eq!(tiles.len() as u32, cols * rows);
                for t in &tiles {
                    assert!(
                        t.x + t.width <= w && t.y + t.height <= h,
                        "{t:?} in {w}x{h}"
                    );
                }
                // Every pixel lies in some tile.
                for y in (0..h).step_by(3) {
                    for x in (0..w).step_by(3) {
                        assert!(
                            tiles.iter().any(|t| x >= t.x
                                && x < t.x + t.width
                                && y >= t.y
                                && y < t.y + t.height),
                            "({x}, {y}) of {w}x{h} in no tile of {cols}x{rows}"
                        );
                    }
                }
            }
        }
        // 2×2 with 25 % overlap on 640×480: tiles of 366×275 sharing ~92×70 px.
        let tiles = TileGrid::default().tiles(640, 480);
        assert_eq!(
            tiles[0],
            Tile {
                x: 0,
                y: 0,
                width: 366,
                height: 275
            }
        );
        assert_eq!(
            tiles[3],
            Tile {
                x: 274,
                y: 205,
                width: 366,
                height: 275
            }
        );
    }

    /// Returns one box at (10, 20) in every image it is given, sized after that image (so the
    /// whole frame's box differs from the tiles'), and records the sizes it saw.
    struct OnePerImage {
        seen: std::rc::Rc<std::cell::RefCell<Vec<(u32, u32)>>>,
    }

    impl FaceDetector for OnePerImage {
        fn detect(&mut self, frame: &RgbImage) -> Vec<FaceBox> {
            self.seen.borrow_mut().push(frame.dimensions());
            vec![b(10.0, 20.0, 30.0, 40.0, frame.width() as f32)]
        }
    }

    #[test]
    fn boxes_found_in_tiles_are_mapped_to_frame_coordinates() {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let inner = OnePerImage { seen: seen.clone() };
        let grid = TileGrid::default();
        let mut tiled = TiledDetector::new(Box::new(inner), grid);
        let frame = RgbImage::new(640, 480);
        let mut found = tiled.detect(&frame);
        // The whole frame first, then the four tiles.
        assert_eq!(
            *seen.borrow(),
            vec![(640, 480), (366, 275), (366, 275), (366, 275), (366, 275)]
        );
        // The whole frame's box and tile (0, 0)'s box are the same place: merged, the whole
        // frame's (score 640) kept over the tile's (366).
        found.sort_by(|a, b| (a.x, a.y).partial_cmp(&(b.x, b.y)).unwrap());
        let places: Vec<(f32, f32, f32)> = found.iter().map(|f| (f.x, f.y, f.score)).collect();
        assert_eq!(
            places,
            vec![
                (10.0, 20.0, 640.0),
                (10.0, 225.0, 366.0),
                (284.0, 20.0, 366.0),
                (284.0, 225.0, 366.0)
            ]
        );
        assert!(found.iter().all(|f| f.width == 30.0 && f.height == 40.0));
    }

    /// A face at fixed frame coordinates, reported (shifted into tile coordinates) by every
    /// image that contains it whole, with a score that differs per image.
    struct FixedFace {
        face: FaceBox,
        frame_size: (u32, u32),
        tiles: Vec<Tile>,
        call: usize,
    }

    impl FaceDetector for FixedFace {
        fn detect(&mut self, frame: &RgbImage) -> Vec<FaceBox> {
            let call = self.call;
            self.call += 1;
            let (ox, oy) = if frame.dimensions() == self.frame_size && call == 0 {
                (0, 0)
            } else {
                let t = self.tiles[call - 1];
                (t.x, t.y)
            };
            let f = self.face;
            let inside = f.x >= ox as f32
                && f.y >= oy as f32
                && f.x + f.width <= (ox + frame.width()) as f32
                && f.y + f.height <= (oy + frame.height()) as f32;
            if !inside {
                return Vec::new();
            }
            vec![FaceBox {
                x: f.x - ox as f32 + call as f32, // a slightly different box each time
                y: f.y - oy as f32,
                score: 0.5 + call as f32 / 10.0,
                ..f
            }]
        }
    }

    #[test]
    fn a_face_seen_in_two_tiles_is_merged_keeping_the_higher_score() {
        let grid = TileGrid {
            full_frame: false,
            ..TileGrid::default()
        };
        let tiles = grid.tiles(640, 480);
        // In the overlap of the two top tiles (x 274..366), not in the bottom ones.
        let face = b(290.0, 40.0, 50.0, 60.0, 0.0);
        let inner = FixedFace {
            face,
            frame_size: (640, 480),
            tiles: tiles.clone(),
            call: 1, // no whole-frame call
        };
        let mut tiled = TiledDetector::new(Box::new(inner), grid);
        let found = tiled.detect(&RgbImage::new(640, 480));
        assert_eq!(found.len(), 1, "{found:?}");
        // Seen in tile 0 (call 1, score 0.6) and tile 1 (call 2, score 0.7): tile 1's kept.
        assert_eq!(found[0].score, 0.7);
        assert_eq!((found[0].x, found[0].y), (292.0, 40.0));
    }

    #[test]
    fn merge_keeps_apart_boxes_and_the_best_of_overlapping_ones() {
        let kept = merge_boxes(
            vec![
                b(0.0, 0.0, 10.0, 10.0, 0.6),
                b(1.0, 0.0, 10.0, 10.0, 0.9),
                b(50.0, 50.0, 10.0, 10.0, 0.1),
            ],
            MERGE_IOU,
        );
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        assert_eq!(kept[1].score, 0.1);
        assert!(merge_boxes(Vec::new(), MERGE_IOU).is_empty());
    }
}
