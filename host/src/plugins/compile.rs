//! Upload-time work: the import check, world inference, and compiling with an on-disk cache
//! keyed by content hash and engine.

use super::errors::UploadError;
use super::manifest::World;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Interface prefixes any plugin may import (`easel:plugin/*` and the WASI a language's
/// standard library needs; the filesystem has no preopened directories).
const ALLOWED_PREFIXES: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "easel:plugin/",
];
const ALLOWED_EXACT: &[&str] = &["wasi:http/types"];
/// Allowed only when the operator lets the tenant use the network.
const NETWORK: &[&str] = &["wasi:sockets/", "wasi:http/outgoing-handler"];

fn unversioned(name: &str) -> &str {
    name.split_once('@').map_or(name, |(n, _)| n)
}

/// Imports outside the allowed set, in the component's order.
pub(crate) fn forbidden_imports<'a>(imports: &[&'a str], network: bool) -> Vec<&'a str> {
    imports
        .iter()
        .copied()
        .filter(|name| {
            let n = unversioned(name);
            let ok = ALLOWED_PREFIXES.iter().any(|p| n.starts_with(p))
                || ALLOWED_EXACT.contains(&n)
                || (network && NETWORK.iter().any(|p| n.starts_with(p)));
            !ok
        })
        .collect()
}

/// The world a component's exports implement.
pub(crate) fn infer_world(exports: &[&str]) -> Result<World, UploadError> {
    let has = |n: &str| exports.iter().any(|e| unversioned(e) == n);
    if has("wasi:http/incoming-handler") {
        Ok(World::Endpoint)
    } else if has("route") {
        Ok(World::Router)
    } else if has("preprocess") && has("postprocess") {
        Ok(World::Processor)
    } else {
        Err(UploadError::UnknownWorld(format!(
            "exports [{}] match no world: a processor exports `preprocess` and `postprocess`, \
             a router `route`, an endpoint `wasi:http/incoming-handler`",
            exports.join(", ")
        )))
    }
}

/// A compiled component and how it was obtained.
pub(crate) struct Compiled {
    pub component: Component,
    pub compile_ms: f64,
    pub cached: bool,
}

/// Loads the cached artefact for `hash`, or compiles `bytes` and caches it. Blocking: run it
/// off the async runtime.
pub(crate) fn load_or_compile(
    engine: &Engine,
    cache_dir: &Path,
    engine_key: &str,
    hash: &str,
    bytes: &[u8],
) -> Result<Compiled, UploadError> {
    let path = cache_dir.join(format!("{hash}-{engine_key}.cwasm"));
    let started = Instant::now();
    if path.exists() {
        // SAFETY: the file is an artefact this host wrote with `Component::serialize` for an
        // engine of the same compatibility hash (in its name) into its private cache dir;
        // wasmtime re-checks the engine configuration before using it.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                return Ok(Compiled {
                    component,
                    compile_ms: started.elapsed().as_secs_f64() * 1e3,
                    cached: true,
                });
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "discarding unusable cached plugin: {e:#}");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let component =
        Component::new(engine, bytes).map_err(|e| UploadError::Invalid(format!("{e:#}")))?;
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;
    match component.serialize() {
        Ok(artefact) => {
            std::fs::create_dir_all(cache_dir)?;
            // Write then rename so a crash never leaves a truncated artefact under the key.
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let tmp = path.with_extension(format!(
                "tmp{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&tmp, artefact)?;
            std::fs::rename(&tmp, &path)?;
        }
        Err(e) => tracing::warn!("not caching plugin {hash}: {e:#}"),
    }
    Ok(Compiled {
        component,
        compile_ms,
        cached: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_check_names_the_offenders() {
        let imports = [
            "wasi:io/streams@0.2.3",
            "wasi:sockets/tcp@0.2.3",
            "easel:plugin/images@0.1.0",
            "wasi:http/types@0.2.0",
            "wasi:http/outgoing-handler@0.2.0",
            "evil:thing/x",
        ];
        assert_eq!(
            forbidden_imports(&imports, false),
            vec![
                "wasi:sockets/tcp@0.2.3",
                "wasi:http/outgoing-handler@0.2.0",
                "evil:thing/x"
            ]
        );
        assert_eq!(forbidden_imports(&imports, true), vec!["evil:thing/x"]);
    }

    #[test]
    fn worlds_are_inferred_from_exports() {
        assert_eq!(
            infer_world(&["preprocess", "postprocess"]).unwrap(),
            World::Processor
        );
        assert_eq!(infer_world(&["route"]).unwrap(), World::Router);
        assert_eq!(
            infer_world(&["wasi:http/incoming-handler@0.2.3"]).unwrap(),
            World::Endpoint
        );
        assert!(infer_world(&["preprocess"]).is_err());
    }
}
