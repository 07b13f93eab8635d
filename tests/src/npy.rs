//! Minimal `.npy` reader for the reference fixtures: little-endian f32
//! (`<f4`) in C order, any shape.

use std::path::Path;

use anyhow::{Context, bail};

/// Shape and data of a float32 `.npy` file.
pub fn read_f32(path: &Path) -> anyhow::Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("{} is not a .npy file", path.display());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes(bytes[8..12].try_into()?) as usize, 12),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len])?;
    if !header.contains("'descr': '<f4'") || header.contains("'fortran_order': True") {
        bail!(
            "{}: only C-order <f4 is supported, header {header}",
            path.display()
        );
    }
    let shape_str = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .context("no shape in the header")?;
    let shape: Vec<usize> = shape_str
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let data: Vec<f32> = bytemuck_f32(&bytes[start + header_len..]);
    if data.len() != shape.iter().product::<usize>() {
        bail!(
            "{}: {} values for shape {shape:?}",
            path.display(),
            data.len()
        );
    }
    Ok((shape, data))
}

fn bytemuck_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
