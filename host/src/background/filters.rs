//! CPU image filters on planar f32 data (row-major `w x h` planes): box
//! means in O(1) per pixel, a Gaussian approximated by three box passes, and
//! binary dilation/erosion with a square window built on the box mean.

/// Mean over the `(2r+1)^2` window clipped to the image (each output divides
/// by the number of pixels actually inside), separable running sums.
pub fn box_mean(src: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    debug_assert_eq!(src.len(), w * h);
    if r == 0 || src.is_empty() {
        return src.to_vec();
    }
    let mut tmp = vec![0.0f32; src.len()];
    // Horizontal pass, one row at a time (f64 sums: no drift on long rows).
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        let out = &mut tmp[y * w..(y + 1) * w];
        let mut sum = 0.0f64;
        let (mut lo, mut hi) = (0usize, 0usize); // window [lo, hi)
        for x in 0..w {
            let want_hi = (x + r + 1).min(w);
            while hi < want_hi {
                sum += row[hi] as f64;
                hi += 1;
            }
            let want_lo = x.saturating_sub(r);
            while lo < want_lo {
                sum -= row[lo] as f64;
                lo += 1;
            }
            out[x] = (sum / (hi - lo) as f64) as f32;
        }
    }
    // Vertical pass over all columns at once, row by row (cache friendly).
    let mut out = vec![0.0f32; src.len()];
    let mut sums = vec![0.0f64; w];
    let (mut lo, mut hi) = (0usize, 0usize);
    for y in 0..h {
        let want_hi = (y + r + 1).min(h);
        while hi < want_hi {
            for (s, v) in sums.iter_mut().zip(&tmp[hi * w..(hi + 1) * w]) {
                *s += *v as f64;
            }
            hi += 1;
        }
        let want_lo = y.saturating_sub(r);
        while lo < want_lo {
            for (s, v) in sums.iter_mut().zip(&tmp[lo * w..(lo + 1) * w]) {
                *s -= *v as f64;
            }
            lo += 1;
        }
        let n = (hi - lo) as f64;
        for (o, s) in out[y * w..(y + 1) * w].iter_mut().zip(&sums) {
            *o = (*s / n) as f32;
        }
    }
    out
}

/// Gaussian blur of standard deviation `sigma` approximated by three box
/// means (Wells 1986; within a few percent of the true kernel).
pub fn gaussian(src: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
    if sigma <= 0.0 {
        return src.to_vec();
    }
    // Three boxes of radius r have variance 3 * ((2r+1)^2 - 1) / 12.
    let r = (((4.0 * sigma * sigma + 1.0).sqrt() - 1.0) / 2.0)
        .round()
        .max(1.0) as usize;
    let a = box_mean(src, w, h, r);
    let b = box_mean(&a, w, h, r);
    box_mean(&b, w, h, r)
}

/// Pixels within `r` (Chebyshev distance) of a set pixel.
pub fn dilate(mask: &[bool], w: usize, h: usize, r: usize) -> Vec<bool> {
    let f: Vec<f32> = mask.iter().map(|&b| b as u8 as f32).collect();
    box_mean(&f, w, h, r).iter().map(|&v| v > 1e-6).collect()
}

/// Pixels whose whole `(2r+1)^2` window (clipped to the image) is set.
pub fn erode(mask: &[bool], w: usize, h: usize, r: usize) -> Vec<bool> {
    let f: Vec<f32> = mask.iter().map(|&b| b as u8 as f32).collect();
    box_mean(&f, w, h, r)
        .iter()
        .map(|&v| v > 1.0 - 1e-6)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_box(src: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
        let mut out = vec![0.0; w * h];
        for y in 0..h {
            for x in 0..w {
                let (mut s, mut n) = (0.0, 0.0);
                for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                    for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                        s += src[yy * w + xx];
                        n += 1.0;
                    }
                }
                out[y * w + x] = s / n;
            }
        }
        out
    }

    #[test]
    fn box_mean_matches_naive_window_sums() {
        for &(w, h, r) in &[(7, 5, 1), (13, 9, 3), (4, 11, 6), (1, 1, 2), (17, 1, 4)] {
            let src: Vec<f32> = (0..w * h).map(|i| ((i * 37) % 11) as f32 * 0.1).collect();
            let got = box_mean(&src, w, h, r);
            let want = naive_box(&src, w, h, r);
            for (g, e) in got.iter().zip(&want) {
                assert!((g - e).abs() < 1e-5, "{w}x{h} r{r}: {g} vs {e}");
            }
        }
    }

    #[test]
    fn gaussian_keeps_constants_and_spreads_an_impulse() {
        let (w, h) = (41, 41);
        let flat = vec![0.25; w * h];
        assert!(
            gaussian(&flat, w, h, 4.0)
                .iter()
                .all(|v| (v - 0.25).abs() < 1e-6)
        );
        let mut imp = vec![0.0; w * h];
        imp[20 * w + 20] = 1.0;
        let g = gaussian(&imp, w, h, 3.0);
        let total: f32 = g.iter().sum();
        assert!((total - 1.0).abs() < 1e-4, "mass {total}");
        // Symmetric and decreasing away from the centre.
        assert!((g[20 * w + 17] - g[20 * w + 23]).abs() < 1e-7);
        assert!(g[20 * w + 20] > g[20 * w + 22] && g[20 * w + 22] > g[20 * w + 26]);
    }

    #[test]
    fn dilate_and_erode_use_a_square_window() {
        let (w, h) = (9, 9);
        let mut m = vec![false; w * h];
        m[4 * w + 4] = true;
        let d = dilate(&m, w, h, 2);
        assert_eq!(d.iter().filter(|&&b| b).count(), 25);
        assert!(d[2 * w + 2] && !d[w + 1]);
        let e = erode(&d, w, h, 2);
        assert_eq!(e.iter().filter(|&&b| b).count(), 1);
        assert!(e[4 * w + 4]);
    }
}
