//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the route
//! annotations, then extended with one concrete path per registered task
//! whose request schema comes from the task's own parameter declarations.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    AppState, account, admin, credits, files, health, jobs, metrics, models, pipelines, plugins,
    tasks,
};

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        let bearer = |d: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(d))
                    .build(),
            )
        };
        c.add_security_scheme(
            "api_key",
            bearer("A tenant API key (`easel tenants create`)"),
        );
        c.add_security_scheme(
            "admin_key",
            bearer("The operator's admin key (admin_key / EASEL_ADMIN_KEY)"),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Easel API", description = "Self-hosted image models: tasks become jobs, scoped to tenants."),
    paths(
        health::healthz, health::readyz, metrics::metrics, openapi_json,
        models::list, tasks::submit,
        jobs::list, jobs::get, jobs::cancel, jobs::events, jobs::webhooks,
        files::upload, files::download, files::delete,
        account::get, credits::ledger,
        plugins::upload, plugins::list, plugins::get, plugins::delete, plugins::logs,
        plugins::pin, plugins::unpin,
        pipelines::list, pipelines::get, pipelines::put, pipelines::delete,
        plugins::endpoint,
        admin::create, admin::list, admin::get, admin::update, admin::credits, admin::rotate_key,
    ),
    modifiers(&Security),
    tags(
        (name = "tasks", description = "Submit work"),
        (name = "jobs", description = "Follow, list and cancel jobs"),
        (name = "files", description = "Inputs and outputs"),
        (name = "models", description = "What this server runs"),
        (name = "account", description = "The calling tenant"),
        (name = "plugins", description = "Tenant WebAssembly plugins and their HTTP endpoints"),
        (name = "admin", description = "Operator endpoints (admin key)"),
        (name = "health", description = "Probes and metrics"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI 3.1 description of this server.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json(State(st): State<AppState>) -> Json<Value> {
    Json(st.openapi.as_ref().clone())
}

/// The generated document plus `/v1/image/<task>` for each task.
pub fn document(st_tasks: &[models::TaskInfo]) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("OpenAPI serializes");
    let generic = doc["paths"]["/v1/image/{task}"].clone();
    for t in st_tasks {
        let mut multipart = serde_json::Map::new();
        let mut body = serde_json::Map::new();
        let mut required = vec![];
        for i in &t.inputs {
            multipart.insert(
                i.name.into(),
                json!({"type": "string", "format": "binary", "description": i.description}),
            );
            body.insert(i.name.into(), json!({"type": "string", "contentEncoding": "base64", "description": format!("{} (base64 or data: URL)", i.description)}));
            let file_id = json!({"type": "string", "description": format!("id of an uploaded file to use as `{}`", i.name)});
            multipart.insert(format!("{}_file_id", i.name), file_id.clone());
            body.insert(format!("{}_file_id", i.name), file_id);
            if i.required {
                required.push(i.name);
            }
        }
        for (name, schema) in &t.params {
            multipart.insert(name.clone(), schema.clone());
            body.insert(name.clone(), schema.clone());
        }
        let common = [
            (
                "webhook",
                json!({"type": "string", "format": "uri", "description": "URL to POST job events to"}),
            ),
            (
                "webhook_events_filter",
                json!({"type": "array", "items": {"enum": ["start", "progress", "completed"]}, "description": "default [completed]"}),
            ),
            (
                "priority",
                json!({"type": "integer", "minimum": 0, "maximum": 9, "default": 5}),
            ),
        ];
        for (k, v) in common {
            multipart.insert(k.into(), v.clone());
            body.insert(k.into(), v);
        }
        let mut op = generic["post"].clone();
        op["operationId"] = json!(format!("run_{}", t.name.replace('-', "_")));
        op["summary"] = json!(format!(
            "Run `{}`: {} ({} credits)",
            t.name, t.description, t.credits
        ));
        if let Some(params) = op["parameters"].as_array_mut() {
            params.retain(|p| p["in"] != "path");
        }
        op["requestBody"] = json!({
            "required": true,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": multipart}},
                "application/json": {"schema": {"type": "object", "properties": body}},
            }
        });
        doc["paths"][format!("/v1/image/{}", t.name)] = json!({ "post": op });
    }
    doc
}
