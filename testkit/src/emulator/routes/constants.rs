//! Environments and workspace constants (`tooljet-constants-datasources.md` §1, §2):
//! `GET /api/app-environments`, `GET /api/v2/ext/workspaces/:ws/environments`, and
//! `/api/organization-constants` (list, per environment, create, update, delete) with
//! ToolJet's status codes, including its plain `Error`s that answer 500.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{ext_guard, lock, nest_error, parse_body, respond, session_guard, Shared, Q};
use crate::emulator::model::{new_id, now, EnvironmentRec, State as Emu, StoredConstant};

/// The mask ToolJet shows instead of a secret's value (`service.ts`, 10 stars).
const MASK: &str = "**********";

/// `GET /api/app-environments` (`modules/app-environments/controller.ts`):
/// `decamelizeKeys({environments})`, enabled ones, `priority ASC`.
pub(super) async fn list_environments(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let list: Vec<Value> = st
        .environments(&ws.id)
        .iter()
        .map(|e| {
            json!({"id": e.id, "name": e.name, "priority": e.priority, "is_default": e.is_default,
                   "enabled": true, "organization_id": ws.id,
                   "created_at": "2025-01-01T00:00:00.000Z", "updated_at": "2025-01-01T00:00:00.000Z"})
        })
        .collect();
    respond(200, json!({ "environments": list }))
}

/// `GET /api/v2/ext/workspaces/:workspaceIdentifier/environments` (EE External API v2,
/// `environments-v2.e2e-spec.ts`): `{data:[{id, name, priority}]}`; 403 without the token, 404
/// for an unknown workspace.
pub(super) async fn ext_v2_environments(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(ws): Path<String>,
) -> Response {
    let st = lock(&s);
    if let Err(r) = ext_guard(&st, &headers, &method, &uri, true) {
        return r.into_response();
    }
    let Some(w) = st.resolve_workspace(&ws).cloned() else {
        return nest_error(404, "Workspace not found");
    };
    let data: Vec<Value> = st
        .environments(&w.id)
        .iter()
        .map(|e| json!({"id": e.id, "name": e.name, "priority": e.priority}))
        .collect();
    respond(200, json!({ "data": data }))
}

/// `GET /api/organization-constants` (CE `service.ts`): Global constants with their values per
/// environment, Secret ones as `{name}` only.
pub(super) async fn list(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let envs = st.environments(&ws.id);
    let list: Vec<Value> = st
        .constants
        .get(&ws.id)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    if c.secret {
                        json!({"name": c.name})
                    } else {
                        let values: Vec<Value> = envs
                            .iter()
                            .map(|e| {
                                json!({"environmentName": e.name, "id": e.id,
                                       "value": c.values.get(&e.id).cloned().unwrap_or_default()})
                            })
                            .collect();
                        json!({"id": c.id, "name": c.name, "values": values,
                               "createdAt": c.created_at, "type": "Global"})
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    respond(200, json!({ "constants": list }))
}

fn kind_name(secret: bool) -> &'static str {
    if secret {
        "Secret"
    } else {
        "Global"
    }
}

/// `GET /api/organization-constants/environment/:environmentId`: `{constants:[{id, name, type,
/// value}]}` for every type, secrets masked.
pub(super) async fn in_environment(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(env): Path<String>,
) -> Response {
    let st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    if !st.environments(&ws.id).iter().any(|e| e.id == env) {
        return nest_error(404, "Environment not found");
    }
    let list: Vec<Value> = st
        .constants
        .get(&ws.id)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let value = if c.secret {
                        MASK.to_string()
                    } else {
                        c.values.get(&env).cloned().unwrap_or_default()
                    };
                    json!({"id": c.id, "name": c.name, "type": kind_name(c.secret), "value": value})
                })
                .collect()
        })
        .unwrap_or_default();
    respond(200, json!({ "constants": list }))
}

/// The decamelized entity (`{constant:{...}}`).
fn entity(c: &StoredConstant, ws: &str) -> Value {
    json!({"constant": {"id": c.id, "constant_name": c.name, "organization_id": ws,
                        "type": kind_name(c.secret), "created_at": c.created_at, "updated_at": c.updated_at}})
}

/// class-validator messages of `CreateOrganizationConstantDto` (ValidationPipe → 400 with a
/// list of messages).
fn validate_create(body: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    match body.get("constant_name") {
        Some(Value::String(n)) => {
            let pattern_ok = n
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if n.is_empty() {
                errors.push("constant_name should not be empty".into());
            } else if !pattern_ok {
                errors.push("Constant name must start with a letter or underscore and can only contain letters, numbers and underscores".into());
            }
            if n.chars().count() > 50 {
                errors.push("constant_name must be shorter than or equal to 50 characters".into());
            }
        }
        _ => errors.push("constant_name must be a string".into()),
    }
    validate_value(body, &mut errors);
    match body.get("type").and_then(Value::as_str) {
        Some("Global") | Some("Secret") => {}
        _ => errors.push("Type must be either Global or Secret".into()),
    }
    match body.get("environments") {
        Some(Value::Array(a)) => {
            if a.iter().any(|e| !e.is_string()) {
                errors.push("each value in environments must be a string".into());
            }
            if a.iter().any(|e| e.as_str() == Some("")) {
                errors.push("each value in environments should not be empty".into());
            }
        }
        _ => errors.push("each value in environments must be a string".into()),
    }
    errors
}

fn validate_value(body: &Value, errors: &mut Vec<String>) {
    match body.get("value") {
        Some(Value::String(v)) if v.is_empty() => {
            errors.push("value should not be empty".into());
        }
        Some(Value::String(v)) if v.chars().count() > 10_000 => {
            errors.push("value must be shorter than or equal to 10000 characters".into());
        }
        Some(Value::String(_)) => {}
        _ => errors.push("value must be a string".into()),
    }
}

fn bad_request(errors: Vec<String>) -> Response {
    respond(
        400,
        json!({"statusCode": 400, "message": errors, "error": "Bad Request"}),
    )
}

/// The ids of the environments a write goes to: every one without the multi-environment
/// licence (CE, "Basic plan customer. lets update all environment constant values"), else
/// the listed ones of this workspace.
fn write_targets(st: &Emu, envs: &[EnvironmentRec], listed: &[String]) -> Vec<String> {
    if st.config.community {
        envs.iter().map(|e| e.id.clone()).collect()
    } else {
        envs.iter()
            .filter(|e| listed.contains(&e.id))
            .map(|e| e.id.clone())
            .collect()
    }
}

/// `POST /api/organization-constants` with `{constant_name, value, type, environments}`: 201
/// `{constant}`; 400 from the DTO; 422 `Already exists!` for the same name and type (the
/// `UQ_organization_constant_name_type` violation). Every environment gets a value row (`''`),
/// then the value is written to the listed ones (EE) or all (CE).
pub(super) async fn create(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let mut st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let errors = validate_create(&body);
    if !errors.is_empty() {
        return bad_request(errors);
    }
    let name = body["constant_name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let value = body["value"].as_str().unwrap_or_default().to_string();
    let secret = body["type"].as_str() == Some("Secret");
    let listed: Vec<String> = body["environments"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if st
        .constants
        .get(&ws.id)
        .is_some_and(|cs| cs.iter().any(|c| c.name == name && c.secret == secret))
    {
        return nest_error(422, "Already exists!");
    }
    let envs = st.environments(&ws.id);
    let targets = write_targets(&st, &envs, &listed);
    let values: BTreeMap<String, String> = envs
        .iter()
        .map(|e| {
            let v = if targets.contains(&e.id) {
                value.clone()
            } else {
                String::new()
            };
            (e.id.clone(), v)
        })
        .collect();
    let t = now();
    let c = StoredConstant {
        id: new_id(),
        name,
        secret,
        values,
        created_at: t.clone(),
        updated_at: t,
    };
    let out = entity(&c, &ws.id);
    st.constants.entry(ws.id.clone()).or_default().push(c);
    respond(201, out)
}

/// `PATCH /api/organization-constants/:id` with `{value, environment_id}`: 200 `{constant}`.
/// Unknown or foreign id → 500 `Constant not found`, neither value nor name → 500 `Nothing to
/// update` (plain `Error`s). CE updates all environments, EE only `environment_id`, the
/// default (production) one when omitted.
pub(super) async fn update(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
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
    let mut errors = Vec::new();
    if body.get("value").is_some() {
        validate_value(&body, &mut errors);
    }
    match body.get("environment_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(e)) if !e.is_empty() => {}
        Some(_) => errors.push("environment_id should not be empty".into()),
    }
    let name = body.get("constant_name").and_then(Value::as_str);
    if name.is_some_and(|n| n.is_empty() || n.chars().count() > 32) {
        errors.push("constant_name must be shorter than or equal to 32 characters".into());
    }
    if !errors.is_empty() {
        return bad_request(errors);
    }
    let value = body
        .get("value")
        .and_then(Value::as_str)
        .map(str::to_string);
    let name = name.map(str::to_string);
    let envs = st.environments(&ws.id);
    let Some(idx) = st
        .constants
        .get(&ws.id)
        .and_then(|cs| cs.iter().position(|c| c.id == id))
    else {
        return nest_error(500, "Constant not found");
    };
    if value.is_none() && name.is_none() {
        return nest_error(500, "Nothing to update");
    }
    let env = match body.get("environment_id").and_then(Value::as_str) {
        Some(e) => match envs.iter().find(|x| x.id == e) {
            Some(x) => x.id.clone(),
            None => return nest_error(404, "Environment not found"),
        },
        None => envs
            .iter()
            .find(|e| e.is_default)
            .map(|e| e.id.clone())
            .unwrap_or_default(),
    };
    let targets = write_targets(&st, &envs, &[env]);
    let Some(c) = st.constants.get_mut(&ws.id).and_then(|cs| cs.get_mut(idx)) else {
        return nest_error(500, "Constant not found");
    };
    if let Some(n) = name {
        c.name = n;
    }
    if let Some(v) = value {
        for t in targets {
            c.values.insert(t, v.clone());
        }
    }
    c.updated_at = now();
    let out = entity(c, &ws.id);
    respond(200, out)
}

/// `DELETE /api/organization-constants/:id[?environmentId=]`: 200 `{"statusCode":204}`;
/// unknown → 500 `Constant not found`. Without `environmentId` the constant goes; with it, EE
/// deletes the whole constant (as ToolJet's EE test observes), CE blanks that environment's
/// value (and deletes the constant when that was its only value row).
pub(super) async fn delete(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(q): Q,
) -> Response {
    let mut st = lock(&s);
    let ws = match session_guard(&st, &headers, true) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let community = st.config.community;
    let Some(list) = st.constants.get_mut(&ws.id) else {
        return nest_error(500, "Constant not found");
    };
    let Some(idx) = list.iter().position(|c| c.id == id) else {
        return nest_error(500, "Constant not found");
    };
    match q.get("environmentId") {
        Some(env) if community => {
            let Some(c) = list.get_mut(idx) else {
                return nest_error(500, "Constant not found");
            };
            if !c.values.contains_key(env) {
                return nest_error(500, "Environment value not found");
            }
            if c.values.len() <= 1 {
                list.remove(idx);
            } else {
                c.values.insert(env.clone(), String::new());
            }
        }
        _ => {
            list.remove(idx);
        }
    }
    respond(200, json!({"statusCode": 204}))
}
