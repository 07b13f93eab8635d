//! Device tensors.

use std::sync::Arc;

use half::f16;

use crate::DType;
use crate::error::{KernelError, Result};
use crate::gpu::{Bind, Gpu};
use crate::pool::PooledBuffer;

/// An n-dimensional array in a GPU buffer. Tensors are contiguous and
/// row-major (the last dimension varies fastest); views that would need other
/// strides are materialised by the layout ops (`permute`, `slice`). Cloning
/// a tensor shares its buffer.
#[derive(Clone)]
pub struct Tensor {
    gpu: Gpu,
    buf: Arc<PooledBuffer>,
    shape: Vec<usize>,
    strides: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {})", self.shape, self.dtype)
    }
}

/// Row-major strides of `shape`, in elements.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

fn numel_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// An uninitialised tensor (its buffer may hold a previous tensor's data).
    /// Every op writes all of its output, so this is what ops allocate.
    pub fn empty(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Tensor> {
        Self::empty_for(gpu, "alloc", shape, dtype)
    }

    /// Like [`Tensor::empty`], naming the op in a size error.
    pub fn empty_for(gpu: &Gpu, op: &'static str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        if dtype == DType::F16 && !gpu.caps().shader_f16 {
            return Err(KernelError::Unsupported {
                op,
                what: "f16 storage (SHADER_F16)".into(),
            });
        }
        let bytes = (numel_of(shape) * dtype.size()) as u64;
        let buf = gpu.alloc(op, bytes)?;
        Ok(Tensor {
            gpu: gpu.clone(),
            buf: Arc::new(buf),
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            dtype,
        })
    }

    /// A tensor of zeros.
    pub fn zeros(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let t = Self::empty(gpu, shape, dtype)?;
        gpu.clear(t.buffer(), t.size_bytes().max(4) as u64);
        Ok(t)
    }

    /// Uploads f32 host data, converting to `dtype` on the way.
    pub fn from_f32(gpu: &Gpu, shape: &[usize], data: &[f32], dtype: DType) -> Result<Tensor> {
        check_len("upload", shape, data.len())?;
        let t = Self::empty_for(gpu, "upload", shape, dtype)?;
        match dtype {
            DType::F32 => gpu.upload(t.buffer(), bytemuck::cast_slice(data)),
            DType::F16 => {
                let h: Vec<f16> = data.iter().map(|&v| f16::from_f32(v)).collect();
                gpu.upload(t.buffer(), bytemuck::cast_slice(&h));
            }
        }
        Ok(t)
    }

    /// Uploads f16 host data, converting to `dtype` on the way.
    pub fn from_f16(gpu: &Gpu, shape: &[usize], data: &[f16], dtype: DType) -> Result<Tensor> {
        check_len("upload", shape, data.len())?;
        let t = Self::empty_for(gpu, "upload", shape, dtype)?;
        match dtype {
            DType::F16 => gpu.upload(t.buffer(), bytemuck::cast_slice(data)),
            DType::F32 => {
                let f: Vec<f32> = data.iter().map(|v| v.to_f32()).collect();
                gpu.upload(t.buffer(), bytemuck::cast_slice(&f));
            }
        }
        Ok(t)
    }

    /// Downloads and converts to f32. Submits pending work and waits for it.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        let bytes = self.gpu.download(self.buffer(), self.size_bytes() as u64)?;
        Ok(match self.dtype {
            DType::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(&bytes),
            DType::F16 => bytemuck::pod_collect_to_vec::<u8, f16>(&bytes)
                .iter()
                .map(|v| v.to_f32())
                .collect(),
        })
    }

    /// Downloads as f16 (converting from f32 storage if needed).
    pub fn to_f16_vec(&self) -> Result<Vec<f16>> {
        let bytes = self.gpu.download(self.buffer(), self.size_bytes() as u64)?;
        Ok(match self.dtype {
            DType::F16 => bytemuck::pod_collect_to_vec::<u8, f16>(&bytes),
            DType::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(&bytes)
                .iter()
                .map(|&v| f16::from_f32(v))
                .collect(),
        })
    }

    /// A copy with its own buffer.
    pub fn deep_clone(&self) -> Result<Tensor> {
        let t = Self::empty_for(&self.gpu, "copy", &self.shape, self.dtype)?;
        self.gpu
            .copy(self.buffer(), t.buffer(), self.size_bytes() as u64);
        Ok(t)
    }

    /// The same data with another shape of equal element count (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel_of(shape) != self.numel() {
            return Err(KernelError::Shape {
                op: "reshape",
                msg: format!(
                    "cannot reshape {:?} ({} elements) to {:?}",
                    self.shape,
                    self.numel(),
                    shape
                ),
            });
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            ..self.clone()
        })
    }

    /// The leading `numel(shape)` elements of this tensor's buffer viewed as
    /// `shape` (no copy). For `[1, C, H, W]` and `shape = [1, c, H, W]`,
    /// `c <= C`, this is the channel prefix: dense blocks write a block's
    /// output at channel offset 0 of a wider tensor and pass this view on as
    /// the next block's residual.
    pub fn prefix_view(&self, shape: &[usize]) -> Result<Tensor> {
        if numel_of(shape) > self.numel() {
            return Err(KernelError::Shape {
                op: "prefix_view",
                msg: format!(
                    "{:?} ({} elements) does not fit in {:?} ({} elements)",
                    shape,
                    numel_of(shape),
                    self.shape,
                    self.numel()
                ),
            });
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            ..self.clone()
        })
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> usize {
        numel_of(&self.shape)
    }
    /// Size of dimension `i`; negative indices count from the end.
    pub fn dim(&self, i: isize) -> usize {
        let r = self.shape.len() as isize;
        self.shape[(if i < 0 { r + i } else { i }) as usize]
    }
    pub fn size_bytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.buffer()
    }
    /// This tensor as a kernel binding.
    pub fn bind(&self) -> Bind<'_> {
        Bind {
            buffer: self.buffer(),
            size: (self.size_bytes() as u64).max(4),
        }
    }
    /// Whether two tensors share storage.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf)
    }
}

fn check_len(op: &'static str, shape: &[usize], got: usize) -> Result<()> {
    let expected = numel_of(shape);
    if expected != got {
        return Err(KernelError::DataLength {
            op,
            shape: shape.to_vec(),
            expected,
            got,
        });
    }
    Ok(())
}
