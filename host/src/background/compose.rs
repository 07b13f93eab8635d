//! Cutouts and compositing with colour decontamination.
//!
//! Pixels in the transition band are mixtures `I = a F + (1 - a) B`; pasting
//! `I` over a new background keeps the old background's colour in them (a
//! halo). The foreground colour `F` is estimated with blur-fusion (Forte and
//! Pitié, "Approximate Fast Foreground Colour Estimation", ICIP 2021): local
//! alpha-weighted means of foreground and background, then the residual of
//! the compositing equation added back, once with a wide window (radius 90)
//! and once with a narrow one (radius 6), as in the paper.

use image::imageops::FilterType;
use image::{Rgb, RgbImage, RgbaImage};

use super::filters::{box_mean, gaussian};

/// Planar f32 RGB in 0..1.
pub type Planes = [Vec<f32>; 3];

pub fn to_planes(img: &RgbImage) -> Planes {
    std::array::from_fn(|c| {
        img.as_raw()
            .iter()
            .skip(c)
            .step_by(3)
            .map(|&v| v as f32 / 255.0)
            .collect()
    })
}

fn quantise(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0 + 0.5).floor() as u8
}

pub fn from_planes(p: &Planes, w: u32, h: u32) -> RgbImage {
    let mut raw = Vec::with_capacity(p[0].len() * 3);
    for i in 0..p[0].len() {
        raw.extend([quantise(p[0][i]), quantise(p[1][i]), quantise(p[2][i])]);
    }
    RgbImage::from_raw(w, h, raw).expect("planes match the size")
}

/// One blur-fusion step: returns the new (F, B) estimates.
fn blur_fusion_step(
    image: &Planes,
    f: &Planes,
    b: &Planes,
    alpha: &[f32],
    w: usize,
    h: usize,
    r: usize,
) -> (Planes, Planes) {
    const EPS: f32 = 1e-5;
    let n = alpha.len();
    let ba = box_mean(alpha, w, h, r);
    let mut fo: Planes = std::array::from_fn(|_| vec![0.0; n]);
    let mut bo: Planes = std::array::from_fn(|_| vec![0.0; n]);
    for c in 0..3 {
        let fa: Vec<f32> = (0..n).map(|i| f[c][i] * alpha[i]).collect();
        let bb: Vec<f32> = (0..n).map(|i| b[c][i] * (1.0 - alpha[i])).collect();
        let bf = box_mean(&fa, w, h, r);
        let bbg = box_mean(&bb, w, h, r);
        for i in 0..n {
            let fm = bf[i] / (ba[i] + EPS);
            let bm = bbg[i] / (1.0 - ba[i] + EPS);
            let a = alpha[i];
            let v = fm + a * (image[c][i] - a * fm - (1.0 - a) * bm);
            fo[c][i] = v.clamp(0.0, 1.0);
            bo[c][i] = bm;
        }
    }
    (fo, bo)
}

/// Foreground colours of `image` under `alpha` (blur-fusion, two passes).
pub fn estimate_foreground(image: &Planes, alpha: &[f32], w: usize, h: usize) -> Planes {
    let (f, b) = blur_fusion_step(image, image, image, alpha, w, h, 90);
    blur_fusion_step(image, &f, &b, alpha, w, h, 6).0
}

/// RGBA cutout: colour = estimated foreground (or the original pixels when
/// `decontaminate` is off), alpha = `alpha`.
pub fn cutout(img: &RgbImage, alpha: &[f32], decontaminate: bool) -> RgbaImage {
    let (w, h) = img.dimensions();
    let fg = if decontaminate {
        from_planes(
            &estimate_foreground(&to_planes(img), alpha, w as usize, h as usize),
            w,
            h,
        )
    } else {
        img.clone()
    };
    let mut raw = Vec::with_capacity(alpha.len() * 4);
    for (px, &a) in fg.pixels().zip(alpha) {
        raw.extend([px[0], px[1], px[2], quantise(a)]);
    }
    RgbaImage::from_raw(w, h, raw).expect("sizes match")
}

/// `F * alpha + background * (1 - alpha)`; `background` has the image's size.
pub fn composite(
    img: &RgbImage,
    alpha: &[f32],
    background: &RgbImage,
    decontaminate: bool,
) -> RgbImage {
    let (w, h) = img.dimensions();
    let f = if decontaminate {
        estimate_foreground(&to_planes(img), alpha, w as usize, h as usize)
    } else {
        to_planes(img)
    };
    let bg = to_planes(background);
    let out: Planes = std::array::from_fn(|c| {
        (0..alpha.len())
            .map(|i| f[c][i] * alpha[i] + bg[c][i] * (1.0 - alpha[i]))
            .collect()
    });
    from_planes(&out, w, h)
}

/// How a background image is fitted to the foreground's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// Scale to cover and centre-crop (no borders).
    #[default]
    Fill,
    /// Scale to fit inside, centred, borders in the letterbox colour.
    Fit,
    /// Stretch to the size, ignoring the aspect ratio.
    Stretch,
}

/// A background of `w x h` from another image.
pub fn fit_background(bg: &RgbImage, w: u32, h: u32, fit: Fit, letterbox: [u8; 3]) -> RgbImage {
    let (bw, bh) = bg.dimensions();
    let filter = FilterType::CatmullRom;
    match fit {
        Fit::Stretch => image::imageops::resize(bg, w, h, filter),
        Fit::Fill => {
            let s = (w as f64 / bw as f64).max(h as f64 / bh as f64);
            let (sw, sh) = (
                ((bw as f64 * s).ceil() as u32).max(w),
                ((bh as f64 * s).ceil() as u32).max(h),
            );
            let scaled = image::imageops::resize(bg, sw, sh, filter);
            image::imageops::crop_imm(&scaled, (sw - w) / 2, (sh - h) / 2, w, h).to_image()
        }
        Fit::Fit => {
            let s = (w as f64 / bw as f64).min(h as f64 / bh as f64);
            let (sw, sh) = (
                ((bw as f64 * s).round() as u32).clamp(1, w),
                ((bh as f64 * s).round() as u32).clamp(1, h),
            );
            let scaled = image::imageops::resize(bg, sw, sh, filter);
            let mut out = RgbImage::from_pixel(w, h, Rgb(letterbox));
            image::imageops::replace(
                &mut out,
                &scaled,
                ((w - sw) / 2) as i64,
                ((h - sh) / 2) as i64,
            );
            out
        }
    }
}

/// The image blurred with a Gaussian of standard deviation `sigma` px.
pub fn blurred(img: &RgbImage, sigma: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    let p = to_planes(img);
    let b: Planes = std::array::from_fn(|c| gaussian(&p[c], w as usize, h as usize, sigma));
    from_planes(&b, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A red disc on green, composited with a soft edge; replacing the
    /// background by blue must leave no green in the edge band.
    #[test]
    fn decontamination_removes_the_old_background_colour() {
        let (w, h) = (64u32, 64u32);
        let (fgc, bgc) = ([0.9f32, 0.1, 0.1], [0.1f32, 0.8, 0.1]);
        let mut alpha = vec![0.0f32; (w * h) as usize];
        let mut img = RgbImage::new(w, h);
        for y in 0..h {
            for x in 0..w {
                let d = ((x as f32 - 32.0).powi(2) + (y as f32 - 32.0).powi(2)).sqrt();
                let a = (20.0 - d).clamp(0.0, 4.0) / 4.0;
                alpha[(y * w + x) as usize] = a;
                let px: [u8; 3] =
                    std::array::from_fn(|c| quantise(a * fgc[c] + (1.0 - a) * bgc[c]));
                img.put_pixel(x, y, Rgb(px));
            }
        }
        let blue = RgbImage::from_pixel(w, h, Rgb([0, 0, 255]));
        let naive = composite(&img, &alpha, &blue, false);
        let clean = composite(&img, &alpha, &blue, true);
        // Worst channel error in the band against the true foreground
        // colour composited over blue.
        let band_error = |out: &RgbImage| {
            let mut worst = 0i32;
            for y in 0..h {
                for x in 0..w {
                    let a = alpha[(y * w + x) as usize];
                    if a > 0.1 && a < 0.9 {
                        let ideal = [a * fgc[0], a * fgc[1], a * fgc[2] + (1.0 - a)];
                        for c in 0..3 {
                            let e = out.get_pixel(x, y)[c] as i32 - quantise(ideal[c]) as i32;
                            worst = worst.max(e.abs());
                        }
                    }
                }
            }
            worst
        };
        let (naive, clean) = (band_error(&naive), band_error(&clean));
        assert!(naive > 40, "naive {naive}");
        assert!(clean <= 8, "decontaminated {clean} (naive {naive})");
    }

    #[test]
    fn fit_modes_give_the_requested_size() {
        let bg = RgbImage::from_pixel(30, 10, Rgb([200, 10, 10]));
        for fit in [Fit::Fill, Fit::Fit, Fit::Stretch] {
            let out = fit_background(&bg, 17, 23, fit, [0, 0, 0]);
            assert_eq!(out.dimensions(), (17, 23), "{fit:?}");
        }
        // Fit letterboxes: the corners are the letterbox colour.
        let out = fit_background(&bg, 20, 20, Fit::Fit, [1, 2, 3]);
        assert_eq!(out.get_pixel(0, 0).0, [1, 2, 3]);
        assert_eq!(out.get_pixel(10, 10).0, [200, 10, 10]);
        // Fill covers everything.
        let out = fit_background(&bg, 20, 20, Fit::Fill, [1, 2, 3]);
        assert!(out.pixels().all(|p| p.0[0] > 150));
    }
}
