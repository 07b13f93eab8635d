//! Loaded models, kept under a GPU memory budget and evicted
//! least-recently-used. Tasks call [`ModelCache::get_or_load`] with a loader;
//! the cache only decides what stays resident.

use std::any::Any;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::ParamError;
use crate::models::{detect, registry};
use crate::weights::Weights;

struct Entry {
    model: Arc<dyn Any + Send + Sync>,
    bytes: u64,
    last_used: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    clock: u64,
}

/// A resident model as `/v1/models` reports it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct LoadedModel {
    pub name: String,
    pub bytes: u64,
}

pub struct ModelCache {
    budget: u64,
    state: Mutex<State>,
    /// Serializes loads so two jobs never load the same weights twice.
    loading: Mutex<()>,
}

impl ModelCache {
    pub fn new(budget_bytes: u64) -> Self {
        ModelCache {
            budget: budget_bytes,
            state: Mutex::default(),
            loading: Mutex::new(()),
        }
    }

    fn lookup<T: Any + Send + Sync>(&self, name: &str) -> Option<Arc<T>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.clock += 1;
        let now = st.clock;
        let e = st.entries.get_mut(name)?;
        e.last_used = now;
        e.model.clone().downcast::<T>().ok()
    }

    /// The model `name`, loading it with `load` (which returns the model and
    /// the GPU bytes it holds) when not resident. Before inserting, the
    /// least-recently-used models are evicted until the new one fits; a model
    /// larger than the whole budget still loads, alone. Jobs holding an
    /// evicted model keep it alive until they finish.
    pub fn get_or_load<T, E>(
        &self,
        name: &str,
        load: impl FnOnce() -> Result<(T, u64), E>,
    ) -> Result<Arc<T>, E>
    where
        T: Any + Send + Sync,
    {
        if let Some(m) = self.lookup::<T>(name) {
            return Ok(m);
        }
        let _guard = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = self.lookup::<T>(name) {
            return Ok(m);
        }
        let (model, bytes) = load()?;
        let model = Arc::new(model);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.entries.remove(name);
        while !st.entries.is_empty()
            && st.entries.values().map(|e| e.bytes).sum::<u64>() + bytes > self.budget
        {
            let victim = st
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
                .expect("non-empty");
            tracing::info!("evicting model {victim} to fit {name} in the GPU memory budget");
            st.entries.remove(&victim);
        }
        st.clock += 1;
        let now = st.clock;
        st.entries.insert(
            name.to_owned(),
            Entry {
                model: model.clone(),
                bytes,
                last_used: now,
            },
        );
        Ok(model)
    }

    pub fn loaded(&self) -> Vec<LoadedModel> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = st
            .entries
            .iter()
            .map(|(k, e)| LoadedModel {
                name: k.clone(),
                bytes: e.bytes,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn resident_bytes(&self) -> u64 {
        self.loaded().iter().map(|m| m.bytes).sum()
    }
}

/// Checks at submit that `name` is an installed model that `fits` (an
/// architecture test on its tensors, read from the mmapped header only),
/// naming the `model` parameter otherwise.
pub fn check_installed(
    models_dir: &Path,
    name: &str,
    what: &str,
    fits: impl FnOnce(&Weights) -> bool,
) -> Result<(), ParamError> {
    let err = |message: String| ParamError {
        param: "model".into(),
        message,
    };
    let entry = registry::resolve(models_dir, name).map_err(|e| err(e.to_string()))?;
    let weights = Weights::open(&entry.weights_path)
        .map_err(|e| err(format!("model '{name}' cannot be read: {e}")))?;
    if fits(&weights) {
        Ok(())
    } else {
        let arch = detect::detect(&weights).map_or("an unknown architecture".into(), |a| {
            format!("a {} model", a.name())
        });
        Err(err(format!("model '{name}' is {arch}, not {what}")))
    }
}

/// Loads a model with `load` and measures the GPU memory it holds (growth of
/// the pool's live bytes; loads are serialized by the cache, but a job
/// running meanwhile can blur the figure, which only steers eviction).
pub fn load_measured<T, E>(
    gpu: &easel_kernels::Gpu,
    load: impl FnOnce() -> Result<T, E>,
) -> Result<(T, u64), E> {
    let before = gpu.memory_stats().bytes_live;
    let model = load()?;
    let bytes = gpu.memory_stats().bytes_live.saturating_sub(before);
    Ok((model, bytes))
}

/// Installed model names whose weights pass `fits`, for `/v1/models`.
pub fn installed(models_dir: &Path, fits: impl Fn(&Weights) -> bool) -> Vec<String> {
    registry::list(models_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| Weights::open(&e.weights_path).is_ok_and(|w| fits(&w)))
        .map(|e| e.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(c: &ModelCache, name: &str, bytes: u64, loads: &mut u32) -> Arc<String> {
        c.get_or_load(name, || {
            *loads += 1;
            Ok::<_, ()>((name.to_owned(), bytes))
        })
        .unwrap()
    }

    #[test]
    fn evicts_least_recently_used_under_budget() {
        let c = ModelCache::new(100);
        let mut loads = 0;
        load(&c, "a", 40, &mut loads);
        load(&c, "b", 40, &mut loads);
        load(&c, "a", 40, &mut loads); // hit: a is now the most recent
        assert_eq!(loads, 2);
        load(&c, "c", 40, &mut loads); // evicts b, the least recent
        let names: Vec<_> = c.loaded().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["a", "c"]);
        load(&c, "huge", 500, &mut loads); // larger than the budget: alone
        assert_eq!(c.loaded().len(), 1);
        assert_eq!(c.resident_bytes(), 500);
        let e: Result<Arc<String>, &str> = c.get_or_load("bad", || Err("no weights"));
        assert_eq!(e.unwrap_err(), "no weights");
    }
}
