//! f32 <-> f16 storage conversion.

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::{Access, Cost, DType, Kernel, KernelError, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}

const TO_F16: &[&str] = &["alias D = f16;"];
const TO_F32: &[&str] = &["alias D = f32;"];

/// `x` converted to `dtype` (a shared-storage clone when it already is).
/// f32 values beyond f16's range saturate to +-65504 rather than becoming
/// infinite.
pub fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    const OP: &str = "cast";
    if x.numel() == 0 {
        return Err(KernelError::Empty {
            op: OP,
            shape: x.shape().to_vec(),
        });
    }
    if x.dtype() == dtype {
        return Ok(x.clone());
    }
    let gpu = x.gpu();
    let y = Tensor::empty_for(gpu, OP, x.shape(), dtype)?;
    let n = x.numel();
    let params = Params {
        n: n as u32,
        _pad: [0; 3],
    };
    const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite];
    let mut kernel =
        Kernel::new(OP, include_str!("cast.wgsl"), x.dtype(), BINDINGS).includes(match dtype {
            DType::F16 => TO_F16,
            DType::F32 => TO_F32,
        });
    // The destination side is f16 when the source (`T`) is f32.
    kernel.needs_f16 = true;
    gpu.dispatch(
        &kernel,
        bytemuck::bytes_of(&params),
        &[x.bind(), y.bind()],
        gpu.grid((n as u64).div_ceil(256))?,
        Cost::new(n as f64, (x.size_bytes() + y.size_bytes()) as f64),
    )?;
    Ok(y)
}

/// CPU reference: the values `x` takes when stored as `dtype`.
pub fn reference(x: &[f32], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F32 => x.to_vec(),
        DType::F16 => x
            .iter()
            .map(|&v| half::f16::from_f32(v.clamp(-65504.0, 65504.0)).to_f32())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn casts_match_reference() {
        let Some(gpu) = test_gpu() else { return };
        if !gpu.caps().shader_f16 {
            return;
        }
        for shape in [&[1usize, 3, 13, 17][..], &[5], &[1, 64, 7, 9], &[1]] {
            let n = shape.iter().product();
            let mut data = rand_vec(n, n as u64, -100.0, 100.0);
            data[0] = 1e6; // saturates
            let x = Tensor::from_f32(&gpu, shape, &data, DType::F32).unwrap();
            let h = cast(&x, DType::F16).unwrap();
            assert_eq!(h.dtype(), DType::F16);
            assert_eq!(h.shape(), shape);
            let want = reference(&data, DType::F16);
            // Either neighbour of an inexact value is a valid WGSL rounding.
            assert_close("f32->f16", &h.to_f32_vec().unwrap(), &want, 1e-3);
            let back = cast(&h, DType::F32).unwrap();
            assert_eq!(back.dtype(), DType::F32);
            // f16 -> f32 is exact.
            assert_eq!(back.to_f32_vec().unwrap(), h.to_f32_vec().unwrap());
        }
    }

    #[test]
    fn same_dtype_shares_storage_and_empty_fails() {
        let Some(gpu) = test_gpu() else { return };
        let x = Tensor::zeros(&gpu, &[2, 3], DType::F32).unwrap();
        assert!(cast(&x, DType::F32).unwrap().same_storage(&x));
        let e = Tensor::empty(&gpu, &[0], DType::F32).unwrap();
        assert!(matches!(
            cast(&e, DType::F16),
            Err(KernelError::Empty { .. })
        ));
    }
}
