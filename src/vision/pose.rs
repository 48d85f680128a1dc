//! Head pose (yaw, pitch, roll) from a face's landmarks, without another network: the eyes,
//! the nose tip and the mouth the detector already returns are fitted to the same points of a
//! generic 3D face, seen through a scaled orthographic camera (a face is far smaller than its
//! distance from the camera). The least-squares fit gives a 2×3 projection; its rows, made
//! orthonormal, are the first two rows of the head's rotation.
//!
//! Angles are in degrees. Yaw is positive when the face turns towards the image's right (the
//! person's left), pitch is positive when it looks up, roll is positive when the face is turned
//! counterclockwise in the image. 0, 0, 0 is a face looking straight into the camera.
//!
//! ```
//! use agecam::vision::pose::head_pose;
//! use agecam::vision::Landmarks;
//!
//! // A face looking straight at the camera: eyes level, the nose between them, the mouth
//! // below the nose.
//! let frontal = Landmarks {
//!     right_eye: [100.0, 100.0],
//!     left_eye: [164.0, 100.0],
//!     nose: [132.0, 135.0],
//!     mouth: [132.0, 165.0],
//!     mouth_corners: None,
//!     ears: None,
//! };
//! let pose = head_pose(&frontal).expect("four points fit");
//! assert!(pose.yaw.abs() < 1.0 && pose.roll.abs() < 1.0, "{pose:?}");
//! ```

use super::Landmarks;

/// A head's orientation, in degrees (see the module documentation for the signs).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct HeadPose {
    pub yaw: f32,
    pub pitch: f32,
    pub roll: f32,
}

/// The generic face, in millimetres, x to the person's left (the image's right), y up, z
/// towards the camera, the nose tip at the origin: average adult proportions (63 mm between
/// the eye centres; eyes 34 mm above and 24 mm behind the nose tip; the mouth 30 mm below it).
mod model {
    pub const RIGHT_EYE: [f32; 3] = [-31.5, 34.0, -24.0];
    pub const LEFT_EYE: [f32; 3] = [31.5, 34.0, -24.0];
    pub const NOSE: [f32; 3] = [0.0, 0.0, 0.0];
    /// The mouth's centre (between the lips).
    pub const MOUTH: [f32; 3] = [0.0, -30.0, -18.0];
    /// The mouth's right and left corners.
    pub const MOUTH_CORNERS: [[f32; 3]; 2] = [[-25.0, -30.0, -25.0], [25.0, -30.0, -25.0]];
}

/// The head pose the landmarks show, or `None` when they are degenerate (points on top of each
/// other, or a fit that is not a rotation).
pub fn head_pose(l: &Landmarks) -> Option<HeadPose> {
    // Image y grows downwards; the model's grows upwards.
    let up = |p: [f32; 2]| [f64::from(p[0]), -f64::from(p[1])];
    let widen = |p: [f32; 3]| p.map(f64::from);
    let mut pairs: Vec<([f64; 3], [f64; 2])> = vec![
        (widen(model::RIGHT_EYE), up(l.right_eye)),
        (widen(model::LEFT_EYE), up(l.left_eye)),
        (widen(model::NOSE), up(l.nose)),
    ];
    match l.mouth_corners {
        Some([right, left]) => {
            pairs.push((widen(model::MOUTH_CORNERS[0]), up(right)));
            pairs.push((widen(model::MOUTH_CORNERS[1]), up(left)));
        }
        None => pairs.push((widen(model::MOUTH), up(l.mouth))),
    }
    let rows = fit_projection(&pairs)?;
    rotation_angles(rows)
}

/// The 2×3 matrix `M` minimising Σ |p − p̄ − M (P − P̄)|² over the (model, image) pairs.
fn fit_projection(pairs: &[([f64; 3], [f64; 2])]) -> Option<[[f64; 3]; 2]> {
    let n = pairs.len() as f64;
    let mut model_mean = [0.0; 3];
    let mut image_mean = [0.0; 2];
    for (m, p) in pairs {
        for k in 0..3 {
            model_mean[k] += m[k] / n;
        }
        for k in 0..2 {
            image_mean[k] += p[k] / n;
        }
    }
    // A = Σ (P − P̄)(P − P̄)ᵀ (3×3), B = Σ (p − p̄)(P − P̄)ᵀ (2×3); M = B A⁻¹.
    let mut a = [[0.0; 3]; 3];
    let mut b = [[0.0; 3]; 2];
    for (m, p) in pairs {
        let dm = [
            m[0] - model_mean[0],
            m[1] - model_mean[1],
            m[2] - model_mean[2],
        ];
        let dp = [p[0] - image_mean[0], p[1] - image_mean[1]];
        for i in 0..3 {
            for j in 0..3 {
                a[i][j] += dm[i] * dm[j];
            }
        }
        for i in 0..2 {
            for j in 0..3 {
                b[i][j] += dp[i] * dm[j];
            }
        }
    }
    let inv = invert3(a)?;
    let mut out = [[0.0; 3]; 2];
    for i in 0..2 {
        for j in 0..3 {
            out[i][j] = (0..3).map(|k| b[i][k] * inv[k][j]).sum();
        }
    }
    Some(out)
}

fn invert3(a: [[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
        - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    if !det.is_finite() || det.abs() < 1e-9 {
        return None;
    }
    let c =
        |r0: usize, c0: usize, r1: usize, c1: usize| a[r0][c0] * a[r1][c1] - a[r0][c1] * a[r1][c0];
    Some([
        [
            c(1, 1, 2, 2) / det,
            -c(0, 1, 2, 2) / det,
            c(0, 1, 1, 2) / det,
        ],
        [
            -c(1, 0, 2, 2) / det,
            c(0, 0, 2, 2) / det,
            -c(0, 0, 1, 2) / det,
        ],
        [
            c(1, 0, 2, 1) / det,
            -c(0, 0, 2, 1) / det,
            c(0, 0, 1, 1) / det,
        ],
    ])
}

/// Yaw, pitch and roll of the rotation whose first two rows the projection's rows are (up to
/// scale): the rows are normalised, made orthogonal (half the correction each), and the third
/// row is their cross product. The rotation is R = Rz(roll) · Rx(pitch) · Ry(yaw), acting on
/// the model's points (see `rotation` in the tests), so its third row is
/// (−sin yaw·cos pitch, −sin pitch, cos yaw·cos pitch), and Rz(roll) = R · (Rx Ry)ᵀ.
fn rotation_angles(rows: [[f64; 3]; 2]) -> Option<HeadPose> {
    let norm = |v: [f64; 3]| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    let (n1, n2) = (norm(rows[0]), norm(rows[1]));
    if n1 < 1e-9 || n2 < 1e-9 {
        return None;
    }
    let r1 = rows[0].map(|x| x / n1);
    let r2 = rows[1].map(|x| x / n2);
    let dot: f64 = (0..3).map(|k| r1[k] * r2[k]).sum();
    // Split the non-orthogonality between the two rows.
    let r1: [f64; 3] = std::array::from_fn(|k| r1[k] - 0.5 * dot * r2[k]);
    let r2: [f64; 3] = std::array::from_fn(|k| r2[k] - 0.5 * dot * r1[k]);
    let (m1, m2) = (norm(r1), norm(r2));
    if m1 < 1e-9 || m2 < 1e-9 {
        return None;
    }
    let r1 = r1.map(|x| x / m1);
    let r2 = r2.map(|x| x / m2);
    let r3 = [
        r1[1] * r2[2] - r1[2] * r2[1],
        r1[2] * r2[0] - r1[0] * r2[2],
        r1[0] * r2[1] - r1[1] * r2[0],
    ];
    let pitch = (-r3[1]).clamp(-1.0, 1.0).asin();
    let yaw = (-r3[0]).atan2(r3[2]);
    // (Rx Ry)'s first row is (cos yaw, 0, sin yaw); Rz's first column is (R₁·it, R₂·it).
    let (c, s) = (yaw.cos(), yaw.sin());
    let roll = (r2[0] * c + r2[2] * s).atan2(r1[0] * c + r1[2] * s);
    let deg = |a: f64| a.to_degrees() as f32;
    let pose = HeadPose {
        yaw: deg(yaw),
        pitch: deg(pitch),
        roll: deg(roll),
    };
    (pose.yaw.is_finite() && pose.pitch.is_finite() && pose.roll.is_finite()).then_some(pose)
}

#[cfg(test)]
mod tests {
    use super::*;

    type M3 = [[f64; 3]; 3];

    fn mul(a: M3, b: M3) -> M3 {
        std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
    }

    /// R = Rz(roll) · Rx(pitch) · Ry(yaw), angles in degrees.
    fn rotation(yaw: f64, pitch: f64, roll: f64) -> M3 {
        let (a, b, g) = (yaw.to_radians(), pitch.to_radians(), roll.to_radians());
        let ry = [
            [a.cos(), 0.0, a.sin()],
            [0.0, 1.0, 0.0],
            [-a.sin(), 0.0, a.cos()],
        ];
        let rx = [
            [1.0, 0.0, 0.0],
            [0.0, b.cos(), b.sin()],
            [0.0, -b.sin(), b.cos()],
        ];
        let rz = [
            [g.cos(), -g.sin(), 0.0],
            [g.sin(), g.cos(), 0.0],
            [0.0, 0.0, 1.0],
        ];
        mul(rz, mul(rx, ry))
    }

    /// The model's landmarks as a camera `distance` mm away with a `focal` px lens sees them
    /// (full perspective, not the fit's orthographic model), at image centre (320, 240).
    fn project(r: M3, distance: f64, focal: f64, corners: bool) -> Landmarks {
        let px = |p: [f32; 3]| -> [f32; 2] {
            let p = p.map(f64::from);
            let x: [f64; 3] = std::array::from_fn(|i| (0..3).map(|k| r[i][k] * p[k]).sum());
            let z = distance - x[2];
            [
                (320.0 + focal * x[0] / z) as f32,
                (240.0 - focal * x[1] / z) as f32,
            ]
        };
        let [rc, lc] = model::MOUTH_CORNERS;
        Landmarks {
            right_eye: px(model::RIGHT_EYE),
            left_eye: px(model::LEFT_EYE),
            nose: px(model::NOSE),
            mouth: px(model::MOUTH),
            mouth_corners: corners.then(|| [px(rc), px(lc)]),
            ears: None,
        }
    }

    #[test]
    fn known_angles_come_back_from_a_perspective_view() {
        // A webcam (focal 600 px at 640×480) 1.5 m away: the face is about 40 px wide.
        for corners in [false, true] {
            for yaw in [-60.0, -40.0, -20.0, 0.0, 15.0, 30.0, 45.0, 60.0] {
                for pitch in [-25.0, -10.0, 0.0, 10.0, 25.0] {
                    for roll in [-20.0, 0.0, 12.0] {
                        let seen = project(rotation(yaw, pitch, roll), 1500.0, 600.0, corners);
                        let pose = head_pose(&seen).unwrap();
                        let err = [
                            f64::from(pose.yaw) - yaw,
                            f64::from(pose.pitch) - pitch,
                            f64::from(pose.roll) - roll,
                        ];
                        assert!(
                            err.iter().all(|e| e.abs() < 2.0),
                            "corners {corners}, yaw {yaw} pitch {pitch} roll {roll}: {pose:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_signs_are_as_documented() {
        // Turned towards the image's right: the nose moves right of the eyes' middle.
        let right = head_pose(&project(rotation(30.0, 0.0, 0.0), 1500.0, 600.0, false)).unwrap();
        let l = project(rotation(30.0, 0.0, 0.0), 1500.0, 600.0, false);
        assert!(l.nose[0] > (l.right_eye[0] + l.left_eye[0]) / 2.0);
        assert!(right.yaw > 25.0, "{right:?}");
        // Looking up: the nose tip rises towards the eyes.
        let up = project(rotation(0.0, 20.0, 0.0), 1500.0, 600.0, false);
        let front = project(rotation(0.0, 0.0, 0.0), 1500.0, 600.0, false);
        assert!(up.nose[1] - up.right_eye[1] < front.nose[1] - front.right_eye[1]);
        assert!(head_pose(&up).unwrap().pitch > 15.0);
        // Turned counterclockwise in the image: the image-right eye above the image-left one.
        let tilted = project(rotation(0.0, 0.0, 15.0), 1500.0, 600.0, false);
        assert!(tilted.left_eye[1] < tilted.right_eye[1]);
        assert!(head_pose(&tilted).unwrap().roll > 10.0);
    }

    #[test]
    fn degenerate_landmarks_give_no_pose() {
        let p = [10.0, 10.0];
        let l = Landmarks {
            right_eye: p,
            left_eye: p,
            nose: p,
            mouth: p,
            mouth_corners: None,
            ears: None,
        };
        assert_eq!(head_pose(&l), None);
    }
}
