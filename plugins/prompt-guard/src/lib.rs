//! `prompt-guard`: a preprocess hook that refuses prompts containing blocked words and wraps
//! accepted ones in the tenant's template.
//!
//! Config: `blocklist` (comma-separated words, matched whole-word and case-insensitively;
//! added to a small built-in list), `template` (containing `{prompt}`, default `{prompt}`).
//! Refusals are counted in the key-value store under `blocked` (when the tenant grants `kv`).

use easel_sdk::prelude::*;

const BUILT_IN: &[&str] = &["gore", "nsfw"];

struct PromptGuard;

fn setting(key: &str) -> Option<String> {
    easel_sdk::config::get(key).ok().flatten()
}

/// The first blocked word appearing as a whole word in `prompt`.
fn blocked_word(prompt: &str, extra: &str) -> Option<String> {
    let words: Vec<String> = prompt
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    BUILT_IN
        .iter()
        .map(|s| s.to_string())
        .chain(
            extra
                .split(',')
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty()),
        )
        .find(|b| words.iter().any(|w| w == b))
}

fn count_refusal() {
    let n = match easel_sdk::kv::get("blocked") {
        Ok(Some(v)) => String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(0),
        _ => 0,
    };
    let _ = easel_sdk::kv::set("blocked", (n + 1).to_string().as_bytes());
}

impl Processor for PromptGuard {
    fn preprocess(mut req: Request) -> Result<Request> {
        let Some(prompt) = req.params.text("prompt").map(str::to_owned) else {
            return Ok(req);
        };
        if let Some(word) = blocked_word(&prompt, &setting("blocklist").unwrap_or_default()) {
            count_refusal();
            log(
                Level::Warn,
                &format!("refused a prompt containing {word:?}"),
            );
            return Err(PluginError::new(
                "prompt_blocked",
                format!("the prompt contains the blocked word {word:?}"),
            ));
        }
        let template = setting("template").unwrap_or_else(|| "{prompt}".to_owned());
        if !template.contains("{prompt}") {
            return Err(PluginError::new(
                "bad_config",
                "template must contain {prompt}",
            ));
        }
        req.params
            .set("prompt", template.replace("{prompt}", &prompt));
        Ok(req)
    }
}

export_processor!(PromptGuard);
