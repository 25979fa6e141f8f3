//! Camera paths: for each instant of the clip, a projective map from output pixels to the
//! cover-fit crop of the source.
//!
//! Units: the crop is measured as if it were exactly `out_w` x `out_h` ("crop units"); the
//! rasteriser rescales to the prefiltered source. Output pixel `(i, j)` covers `[i, i+1) x [j, j+1)`.
//!
//! Every motion is built from the same pieces, applied to a window of `crop / m` centred in the crop:
//! zoom (changes `m` over time), roll (rotates the window), pivot (a true camera rotation about
//! its own centre, `K R K^-1`, which shifts the view and adds slight perspective) and pan (a flat
//! shift). The base magnification `m0` is the smallest that keeps every corner of every frame
//! inside the crop, so the picture never shows a border.

use super::Motion;

pub(super) type Mat3 = [[f64; 3]; 3];

/// Magnification gained by a zoom at speed 1.0 (the zoom ends at 1.35x).
const ZOOM_PER_SPEED: f64 = 0.35;
/// Travel of a pan or tilt at speed 1.0, as a fraction of the frame along the motion.
const SHIFT_PER_SPEED: f64 = 0.20;
/// Total roll at speed 1.0, degrees.
const ROLL_DEG_PER_SPEED: f64 = 8.0;
/// Focal length for pivots, as a fraction of the frame's long side (60 degree field of view).
const PIVOT_FOCAL: f64 = 0.866;
/// How much finer than the largest window the prefiltered source is sampled.
const OVERSAMPLE: f64 = 1.5;

pub(super) struct CameraPath {
    motion: Motion,
    speed: f64,
    w: f64,
    h: f64,
    /// Base magnification: the window at zoom 1.0 is `crop / m0`.
    m0: f64,
}

impl CameraPath {
    pub(super) fn new(motion: Motion, speed: f64, out_w: f64, out_h: f64) -> Self {
        let mut path = CameraPath {
            motion,
            speed,
            w: out_w,
            h: out_h,
            m0: 1.0,
        };
        path.m0 = path.smallest_fitting_m0();
        path
    }

    /// Size of the prefiltered crop relative to the output: the largest window the camera shows
    /// (at magnification `m0`) then holds about 1.5 source pixels per output pixel.
    pub(super) fn oversample_scale(&self) -> f64 {
        OVERSAMPLE * self.m0
    }

    /// Map for the instant `t` in `[0, 1]` (first frame 0, last frame 1), eased.
    pub(super) fn homography(&self, t: f64) -> Mat3 {
        self.homography_with(self.m0, ease(t.clamp(0.0, 1.0)))
    }

    fn homography_with(&self, m0: f64, e: f64) -> Mat3 {
        let (w, h, s) = (self.w, self.h, self.speed);
        // `centred(e)` runs from +0.5 to -0.5: symmetric paths need the least margin.
        let centred = 0.5 - e;
        let zoom_end = 1.0 + ZOOM_PER_SPEED * s;
        let zoom = match self.motion {
            Motion::ZoomIn => zoom_end.powf(e),
            Motion::ZoomOut => zoom_end.powf(1.0 - e),
            _ => 1.0,
        };
        let m = m0 * zoom;
        let (ww, wh) = (w / m, h / m);
        let to_window = [
            [1.0 / m, 0.0, -ww / 2.0],
            [0.0, 1.0 / m, -wh / 2.0],
            [0.0, 0.0, 1.0],
        ];

        let roll = ROLL_DEG_PER_SPEED.to_radians() * s * centred;
        // The map samples the source at the window rotated by `theta`; the picture on screen turns
        // the other way. Clockwise on screen (y down) therefore needs `theta` to decrease.
        let theta = match self.motion {
            Motion::RollClockwise => roll,
            Motion::RollAnticlockwise => -roll,
            _ => 0.0,
        };
        let (st, ct) = theta.sin_cos();
        let rot = [[ct, -st, 0.0], [st, ct, 0.0], [0.0, 0.0, 1.0]];

        // View offsets: left/up are negative. From +half to -half of the travel for "left/up".
        let dx = SHIFT_PER_SPEED * s * ww * centred;
        let dy = SHIFT_PER_SPEED * s * wh * centred;
        let (pan_x, pan_y, piv_x, piv_y) = match self.motion {
            Motion::PanLeft => (dx, 0.0, 0.0, 0.0),
            Motion::PanRight => (-dx, 0.0, 0.0, 0.0),
            Motion::PanUp => (0.0, dy, 0.0, 0.0),
            Motion::PanDown => (0.0, -dy, 0.0, 0.0),
            Motion::TiltLeft => (0.0, 0.0, dx, 0.0),
            Motion::TiltRight => (0.0, 0.0, -dx, 0.0),
            Motion::TiltUp => (0.0, 0.0, 0.0, dy),
            Motion::TiltDown => (0.0, 0.0, 0.0, -dy),
            _ => (0.0, 0.0, 0.0, 0.0),
        };

        let pivot = if piv_x != 0.0 || piv_y != 0.0 {
            // Rotate the camera so that the view centre lands `piv` away: F * tan(angle) = piv.
            let f = PIVOT_FOCAL * ww.max(wh);
            let yaw = (piv_x / f).atan();
            let pitch = (piv_y / f).atan();
            let (sy, cy) = yaw.sin_cos();
            let (sp, cp) = pitch.sin_cos();
            let r_yaw = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
            let r_pitch = [[1.0, 0.0, 0.0], [0.0, cp, sp], [0.0, -sp, cp]];
            let lift = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, f]];
            let project = [[f, 0.0, 0.0], [0.0, f, 0.0], [0.0, 0.0, 1.0]];
            mul(&project, &mul(&mul(&r_pitch, &r_yaw), &lift))
        } else {
            IDENTITY
        };

        let to_crop = [
            [1.0, 0.0, w / 2.0 + pan_x],
            [0.0, 1.0, h / 2.0 + pan_y],
            [0.0, 0.0, 1.0],
        ];
        mul(&to_crop, &mul(&pivot, &mul(&rot, &to_window)))
    }

    /// Whether every output corner of every instant lands inside the crop.
    fn fits(&self, m0: f64) -> bool {
        const STEPS: u32 = 32;
        let tol = 1e-9 * self.w.max(self.h);
        (0..=STEPS).all(|k| {
            let hm = self.homography_with(m0, ease(f64::from(k) / f64::from(STEPS)));
            [(0.0, 0.0), (self.w, 0.0), (0.0, self.h), (self.w, self.h)]
                .into_iter()
                .all(|(x, y)| match apply(&hm, x, y) {
                    Some((sx, sy)) => {
                        sx >= -tol && sy >= -tol && sx <= self.w + tol && sy <= self.h + tol
                    }
                    None => false,
                })
        })
    }

    fn smallest_fitting_m0(&self) -> f64 {
        if self.fits(1.0) {
            return 1.0;
        }
        let mut lo = 1.0;
        let mut hi = 2.0;
        while !self.fits(hi) {
            lo = hi;
            hi *= 1.5;
            if hi > 64.0 {
                // Unreachable for speeds <= SPEED_MAX; a huge zoom-in is still a valid picture.
                return hi;
            }
        }
        for _ in 0..48 {
            let mid = 0.5 * (lo + hi);
            if self.fits(mid) { hi = mid } else { lo = mid }
        }
        hi * (1.0 + 1e-9)
    }
}

/// Smoothstep ease-in-out.
fn ease(t: f64) -> f64 {
    t * t * (3.0 - 2.0 * t)
}

pub(super) const IDENTITY: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

pub(super) fn mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut r = [[0.0; 3]; 3];
    for (i, row) in r.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    r
}

/// Applies a homography to a point; `None` if the point maps to or behind the horizon.
pub(super) fn apply(m: &Mat3, x: f64, y: f64) -> Option<(f64, f64)> {
    let z = m[2][0] * x + m[2][1] * y + m[2][2];
    if z <= 1e-12 {
        return None;
    }
    Some((
        (m[0][0] * x + m[0][1] * y + m[0][2]) / z,
        (m[1][0] * x + m[1][1] * y + m[1][2]) / z,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn centre(p: &CameraPath, t: f64) -> (f64, f64) {
        apply(&p.homography(t), p.w / 2.0, p.h / 2.0).unwrap_or((f64::NAN, f64::NAN))
    }

    #[test]
    fn every_motion_stays_inside_the_crop_at_all_speeds_and_aspects() {
        for (w, h) in [
            (832.0, 480.0),
            (480.0, 832.0),
            (480.0, 480.0),
            (960.0, 480.0),
        ] {
            for m in Motion::ALL {
                for s in [0.05, 1.0, 4.0] {
                    let p = CameraPath::new(m, s, w, h);
                    assert!(p.fits(p.m0), "{m} speed {s} {w}x{h}");
                    assert!(p.m0 < 3.0, "{m} speed {s} needs m0 {}", p.m0);
                }
            }
        }
    }

    #[test]
    fn amplitudes_match_the_spec_at_speed_one() {
        let (w, h) = (832.0, 480.0);
        let zoom = CameraPath::new(Motion::ZoomIn, 1.0, w, h);
        let width_at = |t: f64| {
            let hm = zoom.homography(t);
            let (a, _) = apply(&hm, 0.0, 0.0).unwrap_or_default();
            let (b, _) = apply(&hm, w, 0.0).unwrap_or_default();
            b - a
        };
        assert!((width_at(0.0) / width_at(1.0) - 1.35).abs() < 1e-9);
        assert!(
            (width_at(0.0) - w).abs() < 1e-9,
            "zoom starts on the full crop"
        );

        let pan = CameraPath::new(Motion::PanLeft, 1.0, w, h);
        let (x0, y0) = centre(&pan, 0.0);
        let (x1, y1) = centre(&pan, 1.0);
        let window_w = w / pan.m0;
        assert!(
            ((x0 - x1) / window_w - 0.2).abs() < 1e-9,
            "pan travels 20% of the frame"
        );
        assert!(x1 < x0, "pan_left moves the view left");
        assert!((y0 - y1).abs() < 1e-9);

        let tilt = CameraPath::new(Motion::TiltUp, 1.0, w, h);
        let (_, y0) = centre(&tilt, 0.0);
        let (_, y1) = centre(&tilt, 1.0);
        assert!(((y0 - y1) / (h / tilt.m0) - 0.2).abs() < 1e-9);

        let halfway = centre(&pan, 0.5);
        assert!(
            (halfway.0 - w / 2.0).abs() < 1e-9,
            "eased path is symmetric"
        );
    }
}
