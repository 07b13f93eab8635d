//! Alpha-matting refinement of the trimap band, on the CPU.
//!
//! The trimap is rembg's: definite foreground where the mask is above
//! `fg_threshold` after an erosion of `erode` px, definite background where
//! it is below `bg_threshold` after the same erosion, unknown in between.
//!
//! In the unknown band alpha is solved from colour, by sampling (in the
//! spirit of Bayesian / shared-sampling matting, with local means as the
//! samples): `F` and `B` are the mean colours of the nearest definite
//! foreground and background pixels (box means at growing radii), and alpha
//! is the projection of the pixel onto the line between them, `a = (I - B) .
//! (F - B) / |F - B|^2` — exact for a pixel that is a mix of the two
//! colours. Where `F` and `B` are too alike to tell apart, the model's soft
//! mask is kept (blended by `|F - B|^2 / (|F - B|^2 + tau)`). A colour
//! guided filter (He, Sun and Tang, "Guided Image Filtering") then smooths
//! the estimate along the image's edges, removing per-pixel noise without
//! blurring across them. Hair strands and fur get alpha from their colour
//! instead of the model's low-resolution mask.

use super::filters::{box_mean, erode};

/// Refinement parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MattingOptions {
    /// Mask values above this (0..1) seed definite foreground.
    pub fg_threshold: f32,
    /// Mask values below this seed definite background.
    pub bg_threshold: f32,
    /// Erosion of both seeds in px: the width of the unknown band.
    pub erode: usize,
    /// Guided filter window radius in px.
    pub radius: usize,
    /// Guided filter regulariser (on 0..1 colours): larger = smoother.
    pub eps: f32,
}

impl Default for MattingOptions {
    fn default() -> Self {
        // rembg's defaults: 240/255, 10/255, erode 10.
        Self {
            fg_threshold: 240.0 / 255.0,
            bg_threshold: 10.0 / 255.0,
            erode: 10,
            radius: 8,
            eps: 1e-3,
        }
    }
}

/// Trimap values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trimap {
    Background,
    Unknown,
    Foreground,
}

pub fn trimap(alpha: &[f32], w: usize, h: usize, o: &MattingOptions) -> Vec<Trimap> {
    let fg: Vec<bool> = alpha.iter().map(|&a| a > o.fg_threshold).collect();
    let bg: Vec<bool> = alpha.iter().map(|&a| a < o.bg_threshold).collect();
    let fg = erode(&fg, w, h, o.erode);
    let bg = erode(&bg, w, h, o.erode);
    fg.iter()
        .zip(&bg)
        .map(|(&f, &b)| match (f, b) {
            (true, _) => Trimap::Foreground,
            (false, true) => Trimap::Background,
            _ => Trimap::Unknown,
        })
        .collect()
}

/// Colour guided filter: `guide` is 3 planes of `w*h` in 0..1, `p` the input.
pub fn guided_filter(
    guide: &[Vec<f32>; 3],
    p: &[f32],
    w: usize,
    h: usize,
    r: usize,
    eps: f32,
) -> Vec<f32> {
    let n = w * h;
    let mean = |v: &[f32]| box_mean(v, w, h, r);
    let prod = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).collect::<Vec<f32>>();
    let mi: Vec<Vec<f32>> = guide.iter().map(|g| mean(g)).collect();
    let mp = mean(p);
    // cov(I_c, p) and the symmetric 3x3 colour covariance.
    let cov_ip: Vec<Vec<f32>> = (0..3)
        .map(|c| {
            let m = mean(&prod(&guide[c], p));
            (0..n).map(|i| m[i] - mi[c][i] * mp[i]).collect()
        })
        .collect();
    let pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)];
    let var: Vec<Vec<f32>> = pairs
        .iter()
        .map(|&(a, b)| {
            let m = mean(&prod(&guide[a], &guide[b]));
            (0..n).map(|i| m[i] - mi[a][i] * mi[b][i]).collect()
        })
        .collect();
    let mut ak = [vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]];
    let mut bk = vec![0.0f32; n];
    for i in 0..n {
        // Solve (Sigma + eps I) a = cov_ip with the adjugate (f64: the
        // matrix is near-singular in flat regions, eps keeps it invertible).
        let s = |k: usize| var[k][i] as f64;
        let e = eps as f64;
        let (a11, a12, a13, a22, a23, a33) = (s(0) + e, s(1), s(2), s(3) + e, s(4), s(5) + e);
        let c11 = a22 * a33 - a23 * a23;
        let c12 = a13 * a23 - a12 * a33;
        let c13 = a12 * a23 - a13 * a22;
        let c22 = a11 * a33 - a13 * a13;
        let c23 = a13 * a12 - a11 * a23;
        let c33 = a11 * a22 - a12 * a12;
        let det = a11 * c11 + a12 * c12 + a13 * c13;
        let (v1, v2, v3) = (
            cov_ip[0][i] as f64,
            cov_ip[1][i] as f64,
            cov_ip[2][i] as f64,
        );
        let x1 = (c11 * v1 + c12 * v2 + c13 * v3) / det;
        let x2 = (c12 * v1 + c22 * v2 + c23 * v3) / det;
        let x3 = (c13 * v1 + c23 * v2 + c33 * v3) / det;
        ak[0][i] = x1 as f32;
        ak[1][i] = x2 as f32;
        ak[2][i] = x3 as f32;
        bk[i] = (mp[i] as f64 - x1 * mi[0][i] as f64 - x2 * mi[1][i] as f64 - x3 * mi[2][i] as f64)
            as f32;
    }
    let ma: Vec<Vec<f32>> = ak.iter().map(|a| mean(a)).collect();
    let mb = mean(&bk);
    (0..n)
        .map(|i| ma[0][i] * guide[0][i] + ma[1][i] * guide[1][i] + ma[2][i] * guide[2][i] + mb[i])
        .collect()
}

/// Colour separability (squared RGB distance in 0..1 units) at which the
/// colour estimate and the model's mask weigh equally.
const SEPARABILITY: f32 = 0.01;

/// Mean colour of the `seed` pixels near each pixel: box means at radii
/// `r0, 4 r0, 16 r0, ...`, each pixel taking the first radius whose window
/// holds seeds. Returns the colours and whether any seed was found.
fn seed_colour(
    guide: &[Vec<f32>; 3],
    seed: &[bool],
    w: usize,
    h: usize,
    r0: usize,
) -> ([Vec<f32>; 3], Vec<bool>) {
    let n = w * h;
    let mut out: [Vec<f32>; 3] = std::array::from_fn(|_| vec![0.0; n]);
    let mut found = vec![false; n];
    let ind: Vec<f32> = seed.iter().map(|&s| s as u8 as f32).collect();
    let masked: Vec<Vec<f32>> = (0..3)
        .map(|c| guide[c].iter().zip(&ind).map(|(g, m)| g * m).collect())
        .collect();
    let mut r = r0.max(1);
    loop {
        let cnt = box_mean(&ind, w, h, r);
        let sums: Vec<Vec<f32>> = masked.iter().map(|m| box_mean(m, w, h, r)).collect();
        for i in 0..n {
            if !found[i] && cnt[i] > 1e-7 {
                found[i] = true;
                for c in 0..3 {
                    out[c][i] = sums[c][i] / cnt[i];
                }
            }
        }
        if found.iter().all(|&f| f) || r >= w.max(h) {
            return (out, found);
        }
        r *= 4;
    }
}

/// Refines `alpha` in the trimap's unknown band; definite regions become
/// exactly 0 or 1. `rgb` is interleaved 8-bit RGB of the same size.
pub fn refine(rgb: &[u8], alpha: &[f32], w: usize, h: usize, o: &MattingOptions) -> Vec<f32> {
    let tri = trimap(alpha, w, h, o);
    if !tri.contains(&Trimap::Unknown) {
        return tri
            .iter()
            .map(|&t| (t == Trimap::Foreground) as u8 as f32)
            .collect();
    }
    let guide: [Vec<f32>; 3] = std::array::from_fn(|c| {
        rgb.iter()
            .skip(c)
            .step_by(3)
            .map(|&v| v as f32 / 255.0)
            .collect()
    });
    let fg_seed: Vec<bool> = tri.iter().map(|&t| t == Trimap::Foreground).collect();
    let bg_seed: Vec<bool> = tri.iter().map(|&t| t == Trimap::Background).collect();
    let r0 = o.erode.max(o.radius).max(4);
    let (f, has_f) = seed_colour(&guide, &fg_seed, w, h, r0);
    let (b, has_b) = seed_colour(&guide, &bg_seed, w, h, r0);
    let estimate: Vec<f32> = (0..w * h)
        .map(|i| match tri[i] {
            Trimap::Foreground => 1.0,
            Trimap::Background => 0.0,
            Trimap::Unknown if has_f[i] && has_b[i] => {
                let d: [f32; 3] = std::array::from_fn(|c| f[c][i] - b[c][i]);
                let dd = d.iter().map(|v| v * v).sum::<f32>();
                let proj =
                    (0..3).map(|c| (guide[c][i] - b[c][i]) * d[c]).sum::<f32>() / (dd + 1e-6);
                let conf = dd / (dd + SEPARABILITY);
                conf * proj.clamp(0.0, 1.0) + (1.0 - conf) * alpha[i]
            }
            Trimap::Unknown => alpha[i],
        })
        .collect();
    let q = guided_filter(&guide, &estimate, w, h, o.radius, o.eps);
    tri.iter()
        .zip(q)
        .map(|(&t, v)| match t {
            Trimap::Foreground => 1.0,
            Trimap::Background => 0.0,
            Trimap::Unknown => v.clamp(0.0, 1.0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guided_filter_is_exact_for_a_linear_function_of_the_guide() {
        // p = 0.6*R - 0.3*G + 0.2*B + 0.1 is reproduced (eps -> 0) because
        // the local model alpha = a.I + b holds exactly.
        let (w, h) = (24, 18);
        let guide: [Vec<f32>; 3] = std::array::from_fn(|c| {
            (0..w * h)
                .map(|i| (((i * (7 + 5 * c)) % 29) as f32 / 29.0 + c as f32 * 0.1).fract())
                .collect()
        });
        let p: Vec<f32> = (0..w * h)
            .map(|i| 0.6 * guide[0][i] - 0.3 * guide[1][i] + 0.2 * guide[2][i] + 0.1)
            .collect();
        let q = guided_filter(&guide, &p, w, h, 3, 1e-7);
        for (a, b) in q.iter().zip(&p) {
            assert!((a - b).abs() < 2e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn refine_snaps_alpha_to_a_colour_edge_inside_the_band() {
        // Image: left half dark, right half bright, edge at x = 20. The mask
        // is a blurry ramp from x = 12 to 28: refinement should make the
        // alpha follow the sharp colour edge.
        let (w, h) = (40, 16);
        let mut rgb = vec![0u8; w * h * 3];
        let mut alpha = vec![0.0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let v = if x >= 20 { 220 } else { 30 };
                rgb[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[v, v, v]);
                alpha[y * w + x] = ((x as f32 - 12.0) / 16.0).clamp(0.0, 1.0);
            }
        }
        let o = MattingOptions {
            erode: 2,
            radius: 2,
            eps: 1e-4,
            ..Default::default()
        };
        let a = refine(&rgb, &alpha, w, h, &o);
        let row = &a[8 * w..9 * w];
        assert_eq!(row[0], 0.0);
        assert_eq!(row[w - 1], 1.0);
        // Closer to the ideal step at the colour edge than the input ramp.
        let step = |x: usize| (x >= 20) as u8 as f32;
        let l1 = |r: &[f32]| (0..w).map(|x| (r[x] - step(x)).abs()).sum::<f32>();
        let (before, after) = (l1(&alpha[8 * w..9 * w]), l1(row));
        assert!(after < 0.2 * before, "L1 to the step: {after} vs {before}");
        assert!(
            row.windows(2).all(|p| p[1] >= p[0] - 1e-6),
            "not monotone: {row:?}"
        );
    }

    #[test]
    fn mixed_pixels_get_their_mixing_ratio() {
        // Foreground red on the right, background blue on the left, and a
        // 4-px band of exact 25/50/75% mixes between them; the model mask is
        // a flat 0.5 across the band (it cannot see the mixes).
        let (w, h) = (48, 12);
        let (fgc, bgc) = ([230.0f32, 20.0, 30.0], [10.0f32, 40.0, 200.0]);
        let mix = |x: usize| match x {
            0..=21 => 0.0,
            22 => 0.25,
            23 => 0.5,
            24 => 0.75,
            _ => 1.0,
        };
        let mut rgb = vec![0u8; w * h * 3];
        let mut alpha = vec![0.0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let a = mix(x);
                for c in 0..3 {
                    rgb[(y * w + x) * 3 + c] = (a * fgc[c] + (1.0 - a) * bgc[c]).round() as u8;
                }
                alpha[y * w + x] = if x < 16 {
                    0.0
                } else if x > 30 {
                    1.0
                } else {
                    0.5
                };
            }
        }
        let o = MattingOptions {
            erode: 1,
            radius: 1,
            eps: 1e-6,
            ..Default::default()
        };
        let a = refine(&rgb, &alpha, w, h, &o);
        for x in 18..29 {
            let got = a[6 * w + x];
            assert!(
                (got - mix(x)).abs() < 0.03,
                "x {x}: alpha {got}, mixed at {}",
                mix(x)
            );
        }
    }
}
