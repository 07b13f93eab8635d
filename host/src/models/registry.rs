//! The models directory: `<name>.safetensors` is a model called `<name>`,
//! with an optional `<name>.json` manifest beside it.

use std::path::{Path, PathBuf};

use super::manifest::{Manifest, ManifestError};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("models directory {path} does not exist (set --models-dir or EASEL_MODELS_DIR)")]
    NoDir { path: PathBuf },
    #[error("cannot read models directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "invalid model name '{name}': use letters, digits, '.', '_' and '-' only, not starting with '.'"
    )]
    InvalidName { name: String },
    #[error("unknown model '{name}': not found in {dir}; {}", installed_list(.installed))]
    Unknown {
        name: String,
        dir: PathBuf,
        installed: Vec<String>,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

fn installed_list(installed: &[String]) -> String {
    if installed.is_empty() {
        "no models are installed (add one with `easel models import <path>`)".to_string()
    } else {
        format!("installed: {}", installed.join(", "))
    }
}

/// One installed model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    pub name: String,
    pub weights_path: PathBuf,
    pub manifest: Option<Manifest>,
}

/// Model names double as file names, so they must not be able to leave the
/// models directory or hide as dot-files.
pub fn validate_name(name: &str) -> Result<(), RegistryError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidName {
            name: name.to_string(),
        })
    }
}

pub fn weights_path(models_dir: &Path, name: &str) -> PathBuf {
    models_dir.join(format!("{name}.safetensors"))
}

pub fn manifest_path(models_dir: &Path, name: &str) -> PathBuf {
    models_dir.join(format!("{name}.json"))
}

fn entry(models_dir: &Path, name: &str) -> Result<ModelEntry, RegistryError> {
    let mpath = manifest_path(models_dir, name);
    let manifest = if mpath.is_file() {
        Some(Manifest::load(&mpath)?)
    } else {
        None
    };
    Ok(ModelEntry {
        name: name.to_string(),
        weights_path: weights_path(models_dir, name),
        manifest,
    })
}

/// Every model in the directory, sorted by name.
pub fn list(models_dir: &Path) -> Result<Vec<ModelEntry>, RegistryError> {
    names(models_dir)?
        .iter()
        .map(|n| entry(models_dir, n))
        .collect()
}

fn names(models_dir: &Path) -> Result<Vec<String>, RegistryError> {
    if !models_dir.is_dir() {
        return Err(RegistryError::NoDir {
            path: models_dir.to_path_buf(),
        });
    }
    let io = |source| RegistryError::Io {
        path: models_dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for item in std::fs::read_dir(models_dir).map_err(io)? {
        let path = item.map_err(io)?.path();
        let Some(name) = path
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.strip_suffix(".safetensors"))
        else {
            continue;
        };
        if path.is_file() && validate_name(name).is_ok() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The model called `name`, or an error listing what is installed.
pub fn resolve(models_dir: &Path, name: &str) -> Result<ModelEntry, RegistryError> {
    validate_name(name)?;
    if weights_path(models_dir, name).is_file() {
        return entry(models_dir, name);
    }
    let installed = names(models_dir)?;
    Err(RegistryError::Unknown {
        name: name.to_string(),
        dir: models_dir.to_path_buf(),
        installed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shared_dir;

    #[test]
    fn lists_shared_models() {
        let names: Vec<String> = list(&shared_dir().join("models"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(
            names,
            ["isnet-dis", "realesr-animevideov3-x4", "realesrgan-x4plus"]
        );
    }

    #[test]
    fn unknown_model_lists_installed() {
        let err = resolve(&shared_dir().join("models"), "realesrgan-x8")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown model 'realesrgan-x8'"), "{err}");
        assert!(
            err.contains("installed: isnet-dis, realesr-animevideov3-x4, realesrgan-x4plus"),
            "{err}"
        );
        let empty = tempfile::tempdir().unwrap();
        let err = resolve(empty.path(), "x").unwrap_err().to_string();
        assert!(err.contains("no models are installed"), "{err}");
        let err = resolve(&empty.path().join("nope"), "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        for bad in ["../realesrgan-x4plus", "a/b", ".hidden", "", "a b"] {
            let err = resolve(&shared_dir().join("models"), bad).unwrap_err();
            assert!(
                matches!(err, RegistryError::InvalidName { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn reads_manifest_beside_weights() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.safetensors"), b"").unwrap();
        std::fs::write(
            dir.path().join("m.json"),
            r#"{"scale": 2, "licence": "MIT"}"#,
        )
        .unwrap();
        let e = resolve(dir.path(), "m").unwrap();
        let m = e.manifest.unwrap();
        assert_eq!((m.scale, m.licence.as_deref()), (Some(2), Some("MIT")));
        std::fs::write(dir.path().join("m.json"), "{").unwrap();
        assert!(matches!(
            resolve(dir.path(), "m"),
            Err(RegistryError::Manifest(_))
        ));
    }
}
