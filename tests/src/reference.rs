//! Reading reference outputs (`.npy`) from `../shared` and comparing images.

use std::path::{Path, PathBuf};

use crate::shared_dir;

/// A file under `../shared`, or a panic naming it.
pub fn shared_file(rel: &str) -> PathBuf {
    let p = shared_dir().join(rel);
    assert!(p.is_file(), "missing shared file {}", p.display());
    p
}

/// Reads a little-endian float32 C-order `.npy` file: (shape, data).
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x93NUMPY") && bytes.len() > 12,
        "{} is not a .npy file",
        path.display()
    );
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).expect("ASCII .npy header");
    assert!(
        header.contains("'descr': '<f4'"),
        "{}: not little-endian f32: {header}",
        path.display()
    );
    assert!(
        header.contains("'fortran_order': False"),
        "{}: Fortran order is not supported",
        path.display()
    );
    let dims = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape in .npy header");
    let shape: Vec<usize> = dims
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let data: Vec<f32> = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    assert_eq!(
        data.len(),
        shape.iter().product::<usize>(),
        "{}: data length",
        path.display()
    );
    (shape, data)
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
