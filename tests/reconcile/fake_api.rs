//! An in-memory Kubernetes API for reconcile-level tests (the controller-rs
//! `ApiServerVerifier` idea, as a tower service): it serves GET, POST, PUT and PATCH on the
//! paths the reconcilers use, stores what they write, and records every write so a test can
//! assert the exact status patch and Events of a pass.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

/// One write the reconciler made.
#[derive(Clone, Debug)]
pub struct Write {
    pub method: String,
    pub path: String,
    pub body: Value,
    /// Content type: server-side apply, merge patch, JSON.
    pub content_type: String,
}

impl Write {
    /// `METHOD kind` (e.g. `PATCH gitsyncconfigs/status`, `POST events`), for sequence checks.
    pub fn what(&self) -> String {
        let parts: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let kind = match parts.iter().position(|p| *p == "namespaces") {
            Some(i) => match (parts.get(i + 2), parts.get(i + 4)) {
                (Some(k), Some(sub)) => format!("{k}/{sub}"),
                (Some(k), None) => k.to_string(),
                _ => self.path.clone(),
            },
            None => self.path.clone(),
        };
        format!("{} {kind}", self.method)
    }
}

/// The fake API's state.
#[derive(Default)]
pub struct FakeApi {
    objects: Mutex<BTreeMap<String, Value>>,
    writes: Mutex<Vec<Write>>,
    unexpected: Mutex<Vec<String>>,
    serial: Mutex<u64>,
    denied: Mutex<Vec<(String, String)>>,
}

fn status(code: StatusCode, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code.as_u16()})
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl FakeApi {
    /// A client talking to this fake.
    pub fn client(self: &Arc<Self>) -> kube::Client {
        let api = self.clone();
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.handle(req).await) }
        });
        kube::Client::new(svc, "default")
    }

    /// Stores an object at its path.
    pub fn put(&self, path: &str, obj: Value) {
        self.objects.lock().unwrap().insert(path.to_string(), obj);
    }

    /// The object at a path.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    /// The writes since the last call.
    pub fn take_writes(&self) -> Vec<Write> {
        std::mem::take(&mut *self.writes.lock().unwrap())
    }

    /// Answers `METHOD` on paths starting with `prefix` with 403 Forbidden, as RBAC would.
    pub fn deny(&self, method: &str, prefix: &str) {
        self.denied
            .lock()
            .unwrap()
            .push((method.to_string(), prefix.to_string()));
    }

    /// Requests the fake could not serve.
    pub fn unexpected(&self) -> Vec<String> {
        self.unexpected.lock().unwrap().clone()
    }

    fn next_version(&self) -> String {
        let mut s = self.serial.lock().unwrap();
        *s += 1;
        s.to_string()
    }

    async fn handle(&self, req: Request<kube::client::Body>) -> Response<Full<Bytes>> {
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if method != "GET" {
            self.writes.lock().unwrap().push(Write {
                method: method.clone(),
                path: path.clone(),
                body: body.clone(),
                content_type: content_type.clone(),
            });
        }
        let apply = content_type.starts_with("application/apply-patch");
        let (code, answer) = self.serve(&method, &path, body, apply);
        if code == StatusCode::NOT_FOUND && method != "GET" {
            self.unexpected
                .lock()
                .unwrap()
                .push(format!("{method} {path}"));
        }
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(answer.to_string())))
            .unwrap()
    }

    fn serve(&self, method: &str, path: &str, body: Value, apply: bool) -> (StatusCode, Value) {
        let denied = self
            .denied
            .lock()
            .unwrap()
            .iter()
            .any(|(m, p)| m == method && path.starts_with(p.as_str()));
        if denied {
            return (
                StatusCode::FORBIDDEN,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": format!("secrets is forbidden: User \"operator\" cannot {method} here"),
                       "reason": "Forbidden", "code": 403}),
            );
        }
        let mut objects = self.objects.lock().unwrap();
        if path.ends_with("/events") || path.contains("/events/") {
            let mut ev = body;
            if ev["metadata"]["name"].is_null() {
                ev["metadata"]["name"] = json!(format!("ev-{}", self.next_version()));
            }
            return (StatusCode::CREATED, ev);
        }
        match method {
            "GET" => match objects.get(path) {
                Some(o) => (StatusCode::OK, o.clone()),
                None => (
                    StatusCode::NOT_FOUND,
                    status(StatusCode::NOT_FOUND, "NotFound"),
                ),
            },
            "POST" => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let at = format!("{path}/{name}");
                if objects.contains_key(&at) {
                    return (
                        StatusCode::CONFLICT,
                        status(StatusCode::CONFLICT, "AlreadyExists"),
                    );
                }
                let mut obj = body;
                obj["metadata"]["resourceVersion"] = json!(self.next_version());
                obj["metadata"]["uid"] = json!(format!("uid-{name}"));
                objects.insert(at, obj.clone());
                (StatusCode::CREATED, obj)
            }
            "PUT" => {
                let mut obj = body;
                obj["metadata"]["resourceVersion"] = json!(self.next_version());
                objects.insert(path.to_string(), obj.clone());
                (StatusCode::OK, obj)
            }
            "PATCH" => {
                let (target, is_status) = match path.strip_suffix("/status") {
                    Some(p) => (p.to_string(), true),
                    None => (path.to_string(), false),
                };
                let Some(obj) = objects.get_mut(&target) else {
                    return (
                        StatusCode::NOT_FOUND,
                        status(StatusCode::NOT_FOUND, "NotFound"),
                    );
                };
                if is_status && apply {
                    // Server-side apply of the status by its only manager: the status is what
                    // was applied.
                    obj["status"] = body["status"].clone();
                } else {
                    merge(obj, &body);
                }
                obj["metadata"]["resourceVersion"] = json!(self.next_version());
                (StatusCode::OK, obj.clone())
            }
            _ => (
                StatusCode::METHOD_NOT_ALLOWED,
                status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            ),
        }
    }
}
