//! Global data sources (`tooljet-constants-datasources.md` §3.3, §3.4): the workspace list,
//! one data source in one environment, and the options update, whose stored options are
//! REPLACED by exactly the keys sent.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{lock, nest_error, parse_body, respond, session_guard, Shared, Q};
use crate::emulator::model::{new_id, now, DataSourceOption, DataSourceRec, DataSourceWrite};

/// Kinds whose every update appends `{key:'tokenData', value: undefined}` (`util.service.ts`),
/// wiping stored OAuth tokens.
const TOKEN_DATA_KINDS: &[&str] = &["restapi", "microsoft_graph"];

/// Options as ToolJet shows them: encrypted ones as `{credential_id, encrypted:true}` only,
/// `tokenData` stripped (`repository.ts`).
fn shown_options(options: Option<&Vec<(String, DataSourceOption)>>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, o) in options.into_iter().flatten() {
        if k == "tokenData" {
            continue;
        }
        let v = if o.encrypted {
            json!({"credential_id": o.credential_id, "encrypted": true})
        } else {
            match &o.value {
                Some(v) => json!({"value": v, "encrypted": false}),
                None => json!({"encrypted": false}),
            }
        };
        out.insert(k.clone(), v);
    }
    out
}

/// `GET /api/data-sources/:organizationId` (`OrganizationValidateGuard`: 403 for another
/// workspace): `{data_sources:[...]}` decamelized, options of the lowest-priority environment.
pub(super) async fn list(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(org): Path<String>,
) -> Response {
    let st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    if !org.eq_ignore_ascii_case(&ws.id) {
        return nest_error(403, "Forbidden resource");
    }
    let first_env = st.environments(&ws.id).into_iter().next().map(|e| e.id);
    let list: Vec<Value> = st
        .data_sources
        .iter()
        .filter(|d| d.workspace_id == ws.id)
        .map(|d| {
            let options = if d.ds_type == "sample" {
                Map::new()
            } else {
                shown_options(first_env.as_ref().and_then(|e| d.options.get(e)))
            };
            json!({"id": d.id, "name": d.name, "kind": d.kind, "type": d.ds_type,
                   "scope": "global", "plugin_id": d.plugin_id, "organization_id": d.workspace_id,
                   "created_at": d.created_at, "updated_at": d.updated_at, "options": options})
        })
        .collect();
    respond(200, json!({ "data_sources": list }))
}

/// `ValidateDataSourceGuard`: the data source exists and belongs to the caller's workspace.
fn find<'a>(all: &'a [DataSourceRec], ws: &str, id: &str) -> Option<&'a DataSourceRec> {
    all.iter()
        .find(|d| d.id.eq_ignore_ascii_case(id) && d.workspace_id == ws)
}

/// `GET /api/data-sources/:id/environment/:environment_id`: the entity in camelCase with
/// `options` as an object keyed by option name; secrets never shown.
pub(super) async fn in_environment(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((id, env)): Path<(String, String)>,
) -> Response {
    let st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let Some(d) = find(&st.data_sources, &ws.id, &id) else {
        return nest_error(404, "Data source not found");
    };
    if !st.environments(&ws.id).iter().any(|e| e.id == env) {
        return nest_error(404, "Environment not found");
    }
    respond(
        200,
        json!({"id": d.id, "name": d.name, "kind": d.kind, "type": d.ds_type, "scope": "global",
               "pluginId": d.plugin_id, "organizationId": d.workspace_id,
               "createdAt": d.created_at, "updatedAt": d.updated_at,
               "options": shown_options(d.options.get(&env))}),
    )
}

/// `PUT /api/data-sources/:id?environment_id=` with `{options:[{key, value, encrypted}],
/// name?}`: 200, empty body. The environment's stored options become exactly the keys sent;
/// an encrypted key without a value keeps its secret; restapi/microsoft_graph lose
/// `tokenData`. CE writes every environment, EE only `environment_id` (default: production).
/// Unknown or foreign id → 404; sample → 400; a rename onto a taken name → 400.
pub(super) async fn update(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
    body: Bytes,
) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let mut st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let Some(current) = find(&st.data_sources, &ws.id, &id).cloned() else {
        return nest_error(404, "Data source not found");
    };
    if current.ds_type == "sample" {
        return nest_error(400, "Cannot update configuration of sample data source");
    }
    let envs = st.environments(&ws.id);
    let env = match q.get("environment_id") {
        Some(e) => match envs.iter().find(|x| &x.id == e) {
            Some(x) => x.id.clone(),
            None => return nest_error(404, "Environment not found"),
        },
        None => envs
            .iter()
            .find(|e| e.is_default)
            .map(|e| e.id.clone())
            .unwrap_or_default(),
    };
    let targets: Vec<String> = if st.config.community {
        envs.iter().map(|e| e.id.clone()).collect()
    } else {
        vec![env]
    };
    let rename = body.get("name").and_then(Value::as_str).map(str::to_string);
    if let Some(n) = &rename {
        if st
            .data_sources
            .iter()
            .any(|d| d.workspace_id == ws.id && &d.name == n && d.id != current.id)
        {
            return nest_error(
                400,
                &format!("A data source with name \"{n}\" already exists in this workspace"),
            );
        }
    }
    let sent = match body.get("options") {
        None => None,
        Some(Value::Array(a)) => Some(a.clone()),
        Some(_) => return nest_error(400, "options must be an array"),
    };
    let mut keys = Vec::new();
    let mut updated = current.clone();
    if let Some(sent) = &sent {
        for e in sent {
            match e.get("key").and_then(Value::as_str) {
                Some(k) => keys.push(k.to_string()),
                None => return nest_error(400, "each option must have a key"),
            }
        }
        for t in &targets {
            let before = current.options.get(t).cloned().unwrap_or_default();
            let mut next: Vec<(String, DataSourceOption)> = Vec::new();
            let mut put = |k: &str, o: DataSourceOption| {
                next.retain(|(x, _)| x != k);
                next.push((k.to_string(), o));
            };
            for e in sent {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let encrypted = e.get("encrypted").and_then(Value::as_bool).unwrap_or(false);
                let value = e.get("value").filter(|v| !v.is_null()).cloned();
                let old = before.iter().find(|(k, _)| k == key).map(|(_, o)| o);
                let opt = if encrypted {
                    let existing = old.filter(|o| o.encrypted);
                    let given = value.filter(|v| v.as_str() != Some(""));
                    match (given, existing) {
                        // A new value updates the credential in place (or makes one).
                        (Some(v), ex) => DataSourceOption {
                            value: Some(v),
                            encrypted: true,
                            credential_id: ex
                                .and_then(|o| o.credential_id.clone())
                                .or_else(|| Some(new_id())),
                        },
                        // No value with a credential: the secret stays.
                        (None, Some(o)) => o.clone(),
                        (None, None) => DataSourceOption {
                            value: Some(json!("")),
                            encrypted: true,
                            credential_id: Some(new_id()),
                        },
                    }
                } else {
                    DataSourceOption {
                        value,
                        encrypted: false,
                        credential_id: None,
                    }
                };
                put(key, opt);
            }
            if TOKEN_DATA_KINDS.contains(&current.kind.as_str()) {
                put(
                    "tokenData",
                    DataSourceOption {
                        value: None,
                        encrypted: false,
                        credential_id: None,
                    },
                );
            }
            updated.options.insert(t.clone(), next);
        }
    }
    if let Some(n) = rename {
        updated.name = n;
    }
    updated.updated_at = now();
    if let Some(d) = st.data_sources.iter_mut().find(|d| d.id == current.id) {
        *d = updated;
    }
    st.data_source_writes.push(DataSourceWrite {
        data_source_id: current.id.clone(),
        environments: if sent.is_some() { targets } else { Vec::new() },
        keys,
    });
    respond(200, Value::Null)
}
