//! The framing fit behind `agecam-host fit-framing` (the command is `cmd/fit_framing.rs` in the
//! binary): how a detector's boxes map onto the boxes the age/gender
//! models were trained on (short-range BlazeFace's on the whole picture), so that the crops the
//! device cuts around its faces frame them as the training crops did ([`Reframe`]): YuNet's
//! boxes ([`agecam::vision::yunet::REFRAME`]) and the commercial cascade's, which are
//! short-range boxes found on a magnified crop (they agree already, so none is applied).
//!
//! Both detectors run on the same face chips (each retried letterboxed, as `crops` does); where
//! both find the face (IoU ≥ 0.3), the pair is kept. Least squares then gives the centre shift
//! as a share of YuNet's width and height and the BlazeFace side as `sw·w + sh·h`. The report
//! gives the mean IoU of YuNet's boxes with BlazeFace's, as they are and re-framed.

use agecam::vision::{FaceBox, Reframe};

/// The least-squares fit and how well it frames.
#[derive(Debug, Clone, Copy)]
pub struct Fit {
    pub reframe: Reframe,
    pub pairs: usize,
    pub iou_native: f64,
    pub iou_reframed: f64,
}

/// Fits a [`Reframe`] to `(detector, short-range BlazeFace)` box pairs.
pub fn fit(pairs: &[(FaceBox, FaceBox)]) -> Option<Fit> {
    if pairs.len() < 3 {
        return None;
    }
    let n = pairs.len() as f64;
    let (mut dx, mut dy) = (0f64, 0f64);
    // Normal equations of side = sw·w + sh·h.
    let (mut ww, mut wh, mut hh, mut ws, mut hs) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (y, b) in pairs {
        let (ycx, ycy) = y.center();
        let (bcx, bcy) = b.center();
        dx += ((bcx - ycx) / y.width) as f64;
        dy += ((bcy - ycy) / y.height) as f64;
        let (w, h) = (y.width as f64, y.height as f64);
        let side = b.width.max(b.height) as f64;
        ww += w * w;
        wh += w * h;
        hh += h * h;
        ws += w * side;
        hs += h * side;
    }
    let det = ww * hh - wh * wh;
    if det.abs() < 1e-9 {
        return None;
    }
    let reframe = Reframe {
        dx: (dx / n) as f32,
        dy: (dy / n) as f32,
        sw: ((ws * hh - hs * wh) / det) as f32,
        sh: ((hs * ww - ws * wh) / det) as f32,
    };
    let mean_iou = |f: &dyn Fn(FaceBox) -> FaceBox| -> f64 {
        pairs.iter().map(|(y, b)| f(*y).iou(b) as f64).sum::<f64>() / n
    };
    Some(Fit {
        reframe,
        pairs: pairs.len(),
        iou_native: mean_iou(&|y| y),
        iou_reframed: mean_iou(&|y| reframe.apply(y)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_recovers_a_known_reframing() {
        let known = Reframe {
            dx: 0.02,
            dy: 0.1,
            sw: 0.4,
            sh: 0.6,
        };
        let pairs: Vec<(FaceBox, FaceBox)> = (0..20)
            .map(|i| {
                let y = FaceBox::new(
                    10.0 * i as f32,
                    5.0,
                    40.0 + i as f32,
                    50.0 + 2.0 * (i % 7) as f32,
                    1.0,
                );
                (y, known.apply(y))
            })
            .collect();
        let fit = fit(&pairs).unwrap();
        let r = fit.reframe;
        for (got, want) in [(r.dx, 0.02), (r.dy, 0.1), (r.sw, 0.4), (r.sh, 0.6)] {
            assert!((got - want).abs() < 1e-3, "{r:?}");
        }
        assert!(fit.iou_reframed > 0.999 && fit.iou_native < fit.iou_reframed);
        assert!(super::fit(&pairs[..2]).is_none());
    }
}
