//! PyTorch checkpoints (`torch.save`), read without Python: the zip format
//! (torch >= 1.6) and the legacy concatenated-pickle format. Only tensors
//! are extracted; storages are copied out contiguously in their own dtype.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use safetensors::Dtype;

use super::pickle::{self, StorageDtype, TensorRef, Value};
use super::{ImportError, ImportedTensor};

/// Largest pickle (the object graph, not the weights) we are willing to read.
const MAX_PICKLE_BYTES: u64 = 256 << 20;

/// The pickle of the magic number that opens a legacy torch file.
const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";

/// Wrappers used by basicsr / Real-ESRGAN / other trainers, in order of preference.
const WRAPPERS: [&str; 3] = ["params_ema", "params", "state_dict"];

pub fn read_pth(path: &Path) -> Result<Vec<ImportedTensor>, ImportError> {
    let bad = |msg: String| ImportError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let mut file = std::fs::File::open(path).map_err(|source| ImportError::Io {
        path: path.into(),
        source,
    })?;
    let mut head = [0u8; 4];
    let n = file.read(&mut head).map_err(|source| ImportError::Io {
        path: path.into(),
        source,
    })?;
    if n == 4 && &head == b"PK\x03\x04" {
        read_zip(path, file).map_err(bad)
    } else {
        let data = std::fs::read(path).map_err(|source| ImportError::Io {
            path: path.into(),
            source,
        })?;
        if data.starts_with(LEGACY_MAGIC) {
            read_legacy(&data).map_err(bad)
        } else {
            Err(bad(
                "not a PyTorch checkpoint (neither a torch zip archive nor the legacy format)"
                    .into(),
            ))
        }
    }
}

/// `('storage', <storage type>, key, location, numel[, view metadata])`.
fn storage_pid(pid: Value) -> Result<Value, String> {
    let Value::Tuple(t) = pid else {
        return Err("persistent id is not a tuple".into());
    };
    match t.as_slice() {
        [
            Value::Str(kind),
            Value::Global(pickle::Global::StorageType(dtype)),
            Value::Str(key),
            _,
            Value::Int(numel),
            ..,
        ] if kind == "storage" => {
            let numel = u64::try_from(*numel).map_err(|_| "negative storage size".to_string())?;
            Ok(Value::Storage {
                key: key.clone(),
                dtype: *dtype,
                numel,
            })
        }
        [Value::Str(kind), other, ..] if kind == "storage" => {
            Err(format!("unsupported storage type {other:?}"))
        }
        _ => Err("unsupported persistent id".into()),
    }
}

fn read_zip(path: &Path, file: std::fs::File) -> Result<Vec<ImportedTensor>, String> {
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("bad zip archive: {e}"))?;
    let pkl = zip
        .file_names()
        .filter_map(Result::ok)
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or("zip archive has no <dir>/data.pkl (not a torch.save file)")?
        .to_string();
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let read_entry = |zip: &mut zip::ZipArchive<std::fs::File>,
                      name: &str,
                      limit: u64|
     -> Result<Vec<u8>, String> {
        let mut f = zip
            .by_name(name)
            .map_err(|e| format!("missing {name}: {e}"))?;
        if f.size() > limit {
            return Err(format!(
                "{name} is {} bytes, over the {limit}-byte limit",
                f.size()
            ));
        }
        let mut buf = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut buf)
            .map_err(|e| format!("reading {name}: {e}"))?;
        Ok(buf)
    };
    if zip.index_for_name(&format!("{prefix}byteorder")).is_some() {
        let order = read_entry(&mut zip, &format!("{prefix}byteorder"), 16)?;
        if order != b"little" {
            return Err(format!(
                "byte order {:?} is not supported",
                String::from_utf8_lossy(&order)
            ));
        }
    }
    let pkl_bytes = read_entry(&mut zip, &pkl, MAX_PICKLE_BYTES)?;
    let root = pickle::load(&pkl_bytes, storage_pid).map_err(|e| e.to_string())?;
    let tensors = state_dict(root)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if !storages.contains_key(&t.storage_key) {
            let entry = format!("{prefix}data/{}", t.storage_key);
            let expect = t
                .storage_numel
                .checked_mul(t.dtype.size() as u64)
                .ok_or("storage size overflows")?;
            let bytes = read_entry(&mut zip, &entry, expect)?;
            if (bytes.len() as u64) != expect {
                return Err(format!(
                    "{entry} holds {} bytes, expected {expect}",
                    bytes.len()
                ));
            }
            storages.insert(t.storage_key.clone(), bytes);
        }
        out.push(materialise(name, &t, &storages[&t.storage_key])?);
    }
    tracing::debug!(path = %path.display(), tensors = out.len(), "read torch zip checkpoint");
    Ok(out)
}

fn read_legacy(data: &[u8]) -> Result<Vec<ImportedTensor>, String> {
    let e = |e: pickle::PickleError| e.to_string();
    let no_pid = |_| Err("unexpected persistent id".to_string());
    // The magic number (checked by the caller) is too large for our ints; skip it.
    let (proto, pos) = pickle::load_at(data, LEGACY_MAGIC.len(), no_pid).map_err(e)?;
    if !matches!(proto, Value::Int(1001)) {
        return Err(format!("legacy protocol {proto:?} is not supported"));
    }
    let (sys_info, pos) = pickle::load_at(data, pos, no_pid).map_err(e)?;
    if let Value::Dict(d) = &sys_info {
        let little = d
            .borrow()
            .iter()
            .any(|(k, v)| k.as_str() == Some("little_endian") && matches!(v, Value::Bool(true)));
        if !little {
            return Err("big-endian legacy checkpoints are not supported".into());
        }
    }
    // Every storage's dtype, including those of wrappers we do not import,
    // which still have to be skipped over.
    let mut dtypes: HashMap<String, StorageDtype> = HashMap::new();
    let record = |pid| {
        let v = storage_pid(pid)?;
        if let Value::Storage { key, dtype, .. } = &v {
            dtypes.insert(key.clone(), *dtype);
        }
        Ok(v)
    };
    let (root, pos) = pickle::load_at(data, pos, record).map_err(e)?;
    let (keys, mut pos) = pickle::load_at(data, pos, no_pid).map_err(e)?;
    let Value::List(keys) = keys else {
        return Err("legacy storage key list missing".into());
    };
    let tensors = state_dict(root)?;
    // Storages follow in key order, each as a little-endian u64 element
    // count and the raw elements.
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in keys.borrow().iter() {
        let key = key.as_str().ok_or("storage key is not a string")?;
        let take = |pos: usize, n: u64| -> Result<&[u8], String> {
            usize::try_from(n)
                .ok()
                .and_then(|n| pos.checked_add(n))
                .and_then(|end| data.get(pos..end))
                .ok_or_else(|| "file ends inside a storage (truncated)".to_string())
        };
        let numel = u64::from_le_bytes(take(pos, 8)?.try_into().unwrap_or_default());
        pos += 8;
        let size = dtypes
            .get(key)
            .ok_or_else(|| format!("storage {key} has no recorded type"))?
            .size() as u64;
        let n = numel.checked_mul(size).ok_or("storage size overflows")?;
        storages.insert(key.to_string(), take(pos, n)?);
        pos += n as usize;
    }
    tensors
        .into_iter()
        .map(|(name, t)| {
            let bytes = storages
                .get(&t.storage_key)
                .ok_or_else(|| format!("storage {} missing", t.storage_key))?;
            if (bytes.len() as u64) < t.storage_numel * t.dtype.size() as u64 {
                return Err(format!(
                    "storage {} is shorter than declared",
                    t.storage_key
                ));
            }
            materialise(name, &t, bytes)
        })
        .collect()
}

/// The tensors of the checkpoint's state dict, in file order, unwrapping
/// `params_ema` / `params` / `state_dict` and a DataParallel `module.` prefix.
fn state_dict(root: Value) -> Result<Vec<(String, TensorRef)>, String> {
    let Value::Dict(top) = root else {
        return Err("checkpoint is not a dict".into());
    };
    let inner = WRAPPERS.iter().find_map(|w| {
        top.borrow()
            .iter()
            .find(|(k, v)| k.as_str() == Some(w) && matches!(v, Value::Dict(_)))
            .map(|(_, v)| v.clone())
    });
    let Value::Dict(sd) = inner.unwrap_or(Value::Dict(top)) else {
        unreachable!("matched a dict above")
    };
    let mut out = Vec::new();
    for (k, v) in sd.borrow().iter() {
        let Some(name) = k.as_str() else {
            return Err(format!("state dict key {k:?} is not a string"));
        };
        match v {
            Value::Tensor(t) => out.push((name.to_string(), (**t).clone())),
            other => tracing::debug!(name, value = ?other, "skipping non-tensor state dict entry"),
        }
    }
    if out.is_empty() {
        return Err("checkpoint holds no tensors".into());
    }
    if out.iter().all(|(n, _)| n.starts_with("module.")) {
        for (n, _) in &mut out {
            n.drain(.."module.".len());
        }
    }
    Ok(out)
}

/// Copies a strided view out of its storage into a contiguous buffer.
fn materialise(name: String, t: &TensorRef, storage: &[u8]) -> Result<ImportedTensor, String> {
    let esize = t.dtype.size();
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("{name}: shape overflows"))?;
    if numel > 0 {
        // The farthest element the view touches must lie inside the storage.
        let last = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |a, (&d, &s)| {
                a.checked_add(((d - 1) as u64).checked_mul(s as u64)?)
            })
            .ok_or_else(|| format!("{name}: view overflows"))?;
        if last >= t.storage_numel || (last + 1) * esize as u64 > storage.len() as u64 {
            return Err(format!(
                "{name}: view reaches element {last} of a {}-element storage",
                t.storage_numel
            ));
        }
    }
    let mut data = Vec::with_capacity(numel * esize);
    let contiguous = {
        let mut expect = 1;
        t.shape.iter().zip(&t.stride).rev().all(|(&d, &s)| {
            let ok = d == 1 || s == expect;
            expect *= d;
            ok
        })
    };
    if contiguous {
        let start = t.offset as usize * esize;
        data.extend_from_slice(&storage[start..start + numel * esize]);
    } else {
        let mut idx = vec![0usize; t.shape.len()];
        for _ in 0..numel {
            let off =
                t.offset as usize + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            data.extend_from_slice(&storage[off * esize..(off + 1) * esize]);
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
    let dtype = match t.dtype {
        StorageDtype::F32 => Dtype::F32,
        StorageDtype::F16 => Dtype::F16,
        StorageDtype::BF16 => Dtype::BF16,
        StorageDtype::F64 => Dtype::F64,
    };
    Ok(ImportedTensor {
        name,
        dtype,
        shape: t.shape.clone(),
        data,
    })
}
