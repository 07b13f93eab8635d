//! `easel models import`: brings safetensors files, PyTorch checkpoints and
//! ncnn pairs into the models directory as `<name>.safetensors` (PyTorch
//! tensor names) plus a `<name>.json` manifest.

pub mod ncnn;
pub mod onnx;
pub mod pickle;
pub mod pth;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use safetensors::tensor::TensorView;
use sha2::{Digest, Sha256};

use crate::models::detect::{self, ArchInfo};
use crate::models::manifest::Manifest;
use crate::models::registry::{self, ModelEntry, RegistryError};
use crate::weights::Weights;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error(
        "{path}: unsupported model file; expected .safetensors, a PyTorch checkpoint (.pth, .pt, .ckpt), an ONNX file (.onnx) or an ncnn .param/.bin pair"
    )]
    UnknownKind { path: PathBuf },
    #[error("model '{name}' already exists at {path} (pass --force to replace it)")]
    Exists { name: String, path: PathBuf },
    #[error("cannot derive a model name from {path}; pass --name")]
    NoName { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {msg}")]
    Serialize { path: PathBuf, msg: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// A tensor read from a foreign format: contiguous little-endian data in
/// its stored dtype (nothing is converted on import).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Model name; defaults to the file stem.
    pub name: Option<String>,
    pub licence: Option<String>,
    /// Defaults to the imported file's name.
    pub source: Option<String>,
    /// Declares the scale when the weights cannot tell (RRDBNet with unusual channels).
    pub scale: Option<u32>,
    /// Replace an existing model of the same name.
    pub force: bool,
}

/// What an import produced.
#[derive(Debug)]
pub struct Imported {
    pub entry: ModelEntry,
    pub arch: Option<ArchInfo>,
    pub tensors: usize,
}

enum Kind {
    Safetensors,
    Pth,
    Onnx,
    Ncnn { param: PathBuf, bin: PathBuf },
}

fn kind_of(path: &Path) -> Result<Kind, ImportError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("safetensors") => Ok(Kind::Safetensors),
        Some("pth" | "pt" | "ckpt") => Ok(Kind::Pth),
        Some("onnx") => Ok(Kind::Onnx),
        Some("param") => Ok(Kind::Ncnn {
            param: path.into(),
            bin: path.with_extension("bin"),
        }),
        Some("bin") => Ok(Kind::Ncnn {
            param: path.with_extension("param"),
            bin: path.into(),
        }),
        _ => Err(ImportError::UnknownKind { path: path.into() }),
    }
}

/// Reads any supported format into tensors with PyTorch names (safetensors
/// files are read as they are).
pub fn read_tensors(path: &Path) -> Result<Vec<ImportedTensor>, ImportError> {
    match kind_of(path)? {
        Kind::Safetensors => {
            let w = Weights::open(path).map_err(|e| ImportError::Format {
                path: path.into(),
                msg: e.to_string(),
            })?;
            let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
                path: path.into(),
                source,
            })?;
            let st =
                safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ImportError::Format {
                    path: path.into(),
                    msg: e.to_string(),
                })?;
            Ok(w.index()
                .keys()
                .filter_map(|n| st.tensor(n).ok().map(|v| (n, v)))
                .map(|(n, v)| ImportedTensor {
                    name: n.clone(),
                    dtype: v.dtype(),
                    shape: v.shape().to_vec(),
                    data: v.data().to_vec(),
                })
                .collect())
        }
        Kind::Pth => pth::read_pth(path),
        Kind::Onnx => onnx::import_onnx(path)
            .map_err(|e| ImportError::Format {
                path: path.into(),
                msg: e.to_string(),
            })
            .map(|tensors| {
                tensors
                    .into_iter()
                    .map(|(name, shape, values)| ImportedTensor {
                        name,
                        dtype: Dtype::F32,
                        shape,
                        data: bytemuck::cast_slice(&values).to_vec(),
                    })
                    .collect()
            }),
        Kind::Ncnn { param, bin } => ncnn::read_ncnn(&param, &bin),
    }
}

/// Imports `src` into `models_dir`.
pub fn import(
    src: &Path,
    models_dir: &Path,
    opts: &ImportOptions,
) -> Result<Imported, ImportError> {
    let kind = kind_of(src)?;
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => src
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| ImportError::NoName { path: src.into() })?
            .to_string(),
    };
    registry::validate_name(&name)?;
    let dest = registry::weights_path(models_dir, &name);
    if dest.exists() && !opts.force {
        return Err(ImportError::Exists { name, path: dest });
    }
    std::fs::create_dir_all(models_dir).map_err(|source| ImportError::Write {
        path: models_dir.into(),
        source,
    })?;
    // Write beside the destination, then rename: a failed import never
    // leaves a half-written model under its real name.
    let tmp = models_dir.join(format!(".{name}.safetensors.partial"));
    let written = match kind {
        Kind::Safetensors => {
            // Validate before copying: a bad file is rejected, not installed.
            Weights::open(src).map_err(|e| ImportError::Format {
                path: src.into(),
                msg: e.to_string(),
            })?;
            std::fs::copy(src, &tmp)
                .map_err(|source| ImportError::Write {
                    path: tmp.clone(),
                    source,
                })
                .map(|_| ())
        }
        Kind::Pth | Kind::Onnx => write_safetensors(&read_tensors(src)?, src, &tmp),
        Kind::Ncnn { param, bin } => write_safetensors(&ncnn::read_ncnn(&param, &bin)?, src, &tmp),
    };
    let finish = || -> Result<Imported, ImportError> {
        written?;
        // Installed models are ordinary files whatever the source's mode
        // (a read-only source, or the serializer's private mode).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).map_err(
                |source| ImportError::Write {
                    path: tmp.clone(),
                    source,
                },
            )?;
        }
        let weights = Weights::open(&tmp).map_err(|e| ImportError::Format {
            path: tmp.clone(),
            msg: e.to_string(),
        })?;
        let arch = detect::detect(&weights);
        let dtypes: BTreeSet<String> = weights
            .index()
            .values()
            .map(|i| i.dtype.to_ascii_lowercase())
            .collect();
        let manifest = Manifest {
            architecture: arch.as_ref().map(|a| a.name().to_string()),
            scale: opts.scale.or(arch.as_ref().and_then(ArchInfo::scale)),
            dtype: Some(dtypes.into_iter().collect::<Vec<_>>().join("+")),
            sha256: Some(sha256_file(&tmp)?),
            source: Some(opts.source.clone().unwrap_or_else(|| {
                src.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })),
            licence: opts.licence.clone(),
            normalisation: arch.as_ref().and_then(ArchInfo::normalisation),
            preprocess: None,
        };
        let tensors = weights.index().len();
        drop(weights);
        let mpath = registry::manifest_path(models_dir, &name);
        let mtmp = models_dir.join(format!(".{name}.json.partial"));
        std::fs::write(&mtmp, manifest.to_json()).map_err(|source| ImportError::Write {
            path: mtmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &dest).map_err(|source| ImportError::Write {
            path: dest.clone(),
            source,
        })?;
        std::fs::rename(&mtmp, &mpath).map_err(|source| ImportError::Write {
            path: mpath.clone(),
            source,
        })?;
        Ok(Imported {
            entry: registry::resolve(models_dir, &name)?,
            arch,
            tensors,
        })
    };
    let result = finish();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(models_dir.join(format!(".{name}.json.partial")));
    }
    result
}

fn write_safetensors(
    tensors: &[ImportedTensor],
    src: &Path,
    out: &Path,
) -> Result<(), ImportError> {
    let ser = |msg: String| ImportError::Serialize {
        path: out.into(),
        msg,
    };
    let mut seen = HashMap::new();
    let mut views = Vec::with_capacity(tensors.len());
    for t in tensors {
        if seen.insert(t.name.as_str(), ()).is_some() {
            return Err(ImportError::Format {
                path: src.into(),
                msg: format!("tensor '{}' appears twice", t.name),
            });
        }
        let view = TensorView::new(t.dtype, t.shape.clone(), &t.data)
            .map_err(|e| ser(format!("tensor '{}': {e}", t.name)))?;
        views.push((t.name.as_str(), view));
    }
    let meta: HashMap<String, String> = BTreeMap::from([(
        "converted_from".to_string(),
        src.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
    )])
    .into_iter()
    .collect();
    safetensors::serialize_to_file(views, Some(meta), out).map_err(|e| ser(e.to_string()))
}

/// Lower-case hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, ImportError> {
    let io = |source| ImportError::Io {
        path: path.into(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests;
