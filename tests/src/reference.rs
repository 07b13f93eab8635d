//! Reference files under `../shared` and image comparison.

use std::path::PathBuf;

use crate::shared_dir;

/// A file under `../shared`, or a panic naming it.
pub fn shared_file(rel: &str) -> PathBuf {
    let p = shared_dir().join(rel);
    assert!(p.is_file(), "missing shared file {}", p.display());
    p
}

/// PSNR in dB between two 8-bit sample arrays (infinite when equal).
pub fn psnr_u8(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "PSNR of arrays of different lengths");
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}
