//! Helpers shared by the forge emulator tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use reqwest::header::HeaderMap;
use serde_json::Value;
use tooljet_gitsync_testkit::httpgit::git_https_env;

/// A reqwest client trusting only the test CA.
pub fn client(ca_pem: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

/// Sends a request with optional `(header, value)` auth and JSON body.
pub async fn call(
    c: &reqwest::Client,
    method: &str,
    url: &str,
    auth: Option<(&str, &str)>,
    body: Option<Value>,
) -> (u16, HeaderMap, Value) {
    let mut rb = c.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some((h, v)) = auth {
        rb = rb.header(h, v);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, headers, v)
}

/// Runs git with credentials from the environment (helper) and the CA file.
pub fn git(dir: &Path, ca: &Path, user: &str, password: &str, args: &[&str]) -> Output {
    Command::new("git")
        .args(["-c", "user.name=Tester", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .envs(git_https_env(ca, user, password))
        .output()
        .unwrap()
}

pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "git failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn link(h: &HeaderMap) -> String {
    h.get("link")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}
