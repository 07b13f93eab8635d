//! Model weights from `.safetensors` files: memory-mapped, looked up by
//! checkpoint name, shape-checked and converted to the compute dtype on upload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use easel_kernels::{DType, Gpu, Tensor};
use half::{bf16, f16};
use safetensors::{Dtype as StDtype, SafeTensors};

#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("cannot open weights {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid safetensors file: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("{path}: missing tensor '{name}'")]
    Missing { path: PathBuf, name: String },
    #[error("{path}: tensor '{name}' has shape {got:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("{path}: tensor '{name}' has unsupported dtype {dtype}")]
    DType {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error(transparent)]
    Gpu(#[from] easel_kernels::KernelError),
}

/// Shape and dtype of one stored tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub shape: Vec<usize>,
    pub dtype: String,
}

/// A memory-mapped safetensors file.
pub struct Weights {
    path: PathBuf,
    // Keep the mapping alive; `SafeTensors` is re-parsed on demand from it
    // (parsing only reads the JSON header, so this is cheap).
    mmap: memmap2::Mmap,
    index: BTreeMap<String, TensorInfo>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Weights({}, {} tensors)",
            self.path.display(),
            self.index.len()
        )
    }
}

impl Weights {
    pub fn open(path: &Path) -> Result<Weights, WeightError> {
        let io = |source| WeightError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the file is opened read-only and model files are not
        // modified while a server runs; a concurrent writer could at worst
        // change weights we read, not memory safety of our own data (bytes
        // are copied out before use).
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let st = SafeTensors::deserialize(&mmap).map_err(|e| WeightError::Format {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let index = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                (
                    name,
                    TensorInfo {
                        shape: view.shape().to_vec(),
                        dtype: format!("{:?}", view.dtype()),
                    },
                )
            })
            .collect();
        Ok(Weights {
            path: path.to_path_buf(),
            mmap,
            index,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor name with its shape and dtype, sorted by name.
    pub fn index(&self) -> &BTreeMap<String, TensorInfo> {
        &self.index
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> Result<&[usize], WeightError> {
        self.index
            .get(name)
            .map(|i| i.shape.as_slice())
            .ok_or_else(|| WeightError::Missing {
                path: self.path.clone(),
                name: name.into(),
            })
    }

    /// The tensor as f32 host data, with its shape.
    pub fn f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), WeightError> {
        let st = SafeTensors::deserialize(&self.mmap).map_err(|e| WeightError::Format {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        let view = st.tensor(name).map_err(|_| WeightError::Missing {
            path: self.path.clone(),
            name: name.into(),
        })?;
        let data = view.data();
        let values = match view.dtype() {
            StDtype::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(data),
            StDtype::F16 => bytemuck::pod_collect_to_vec::<u8, f16>(data)
                .iter()
                .map(|v| v.to_f32())
                .collect(),
            StDtype::BF16 => bytemuck::pod_collect_to_vec::<u8, bf16>(data)
                .iter()
                .map(|v| v.to_f32())
                .collect(),
            StDtype::F64 => bytemuck::pod_collect_to_vec::<u8, f64>(data)
                .iter()
                .map(|&v| v as f32)
                .collect(),
            other => {
                return Err(WeightError::DType {
                    path: self.path.clone(),
                    name: name.into(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        Ok((view.shape().to_vec(), values))
    }

    /// The tensor as f32, checking its shape (`expected` empty = any shape).
    pub fn f32_checked(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, WeightError> {
        let (shape, values) = self.f32(name)?;
        if !expected.is_empty() && shape != expected {
            return Err(WeightError::Shape {
                path: self.path.clone(),
                name: name.into(),
                expected: expected.to_vec(),
                got: shape,
            });
        }
        Ok(values)
    }

    /// Uploads a tensor to the GPU in `dtype`, checking its shape.
    pub fn tensor(
        &self,
        gpu: &Gpu,
        name: &str,
        expected: &[usize],
        dtype: DType,
    ) -> Result<Tensor, WeightError> {
        let values = self.f32_checked(name, expected)?;
        let shape = self.shape(name)?.to_vec();
        Ok(Tensor::from_f32(gpu, &shape, &values, dtype)?)
    }
}
