//! Runs the Argo CD health check shipped in `examples/argocd/health.lua` against sample AppSync
//! and GitSyncConfig objects, the way Argo CD does (the object as the global `obj`, the script as
//! one chunk returning `hs`), through `lua5.4` (Debian package `lua5.4`, see .ci/install-deps.sh)
//! and the driver in `tests/lua/health_driver.lua`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn health_script() -> PathBuf {
    root().join("examples/argocd/health.lua")
}

/// Evaluates the health script for `obj`; returns (status, message).
fn health(obj: &Value) -> (String, String) {
    let mut child = Command::new("lua5.4")
        .arg(root().join("tests/lua/health_driver.lua"))
        .arg(health_script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.4 not found: install the Debian package lua5.4 (.ci/install-deps.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(obj.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "health script failed for {obj}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let status = lines.next().unwrap_or_default().to_string();
    let message = lines.collect::<Vec<_>>().join("\n");
    (status, message)
}

fn cond(type_: &str, status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": generation,
    })
}

fn app_sync(generation: i64, status: Option<Value>) -> Value {
    let mut obj = json!({
        "apiVersion": "gitsync.tooljet.io/v1alpha1",
        "kind": "AppSync",
        "metadata": { "name": "sales-dashboard", "namespace": "tooljet-dev", "generation": generation },
        "spec": {
            "gitSyncConfigRef": { "name": "sales" },
            "app": "Sales Dashboard",
            "direction": "Push",
            "suspend": false,
        },
    });
    if let Some(status) = status {
        obj["status"] = status;
    }
    obj
}

fn git_sync_config(generation: i64, status: Option<Value>) -> Value {
    let mut obj = json!({
        "apiVersion": "gitsync.tooljet.io/v1alpha1",
        "kind": "GitSyncConfig",
        "metadata": { "name": "sales", "namespace": "tooljet-dev", "generation": generation },
        "spec": {
            "enabled": true,
            "repository": { "url": "git@github.com:acme/tooljet-apps.git", "branch": "master" },
            "tooljet": {
                "url": "https://tooljet.dev.acme.internal",
                "workspace": "sales",
                "credentialsSecretRef": { "name": "tooljet-api" },
            },
        },
    });
    if let Some(status) = status {
        obj["status"] = status;
    }
    obj
}

#[track_caller]
fn assert_health(obj: &Value, want_status: &str, want_message: &str) {
    let (status, message) = health(obj);
    assert_eq!(status, want_status, "status for {obj}");
    assert!(
        message.contains(want_message),
        "message {message:?} should contain {want_message:?} for {obj}"
    );
}

#[test]
fn healthy_when_ready_for_the_current_generation() {
    let obj = app_sync(
        4,
        Some(json!({
            "observedGeneration": 4,
            "conditions": [
                cond("Ready", "True", "Succeeded", "Pushed v3 as abc1234", 4),
                cond("Synced", "True", "Succeeded", "", 4),
                cond("UpdateAvailable", "False", "UpToDate", "", 4),
            ],
        })),
    );
    assert_health(&obj, "Healthy", "Pushed v3 as abc1234");

    let config = git_sync_config(
        2,
        Some(json!({
            "observedGeneration": 2,
            "conditions": [
                cond("Ready", "True", "Succeeded", "Repository and ToolJet reachable", 2),
                cond("DeployKeyReady", "True", "Succeeded", "", 2),
                cond("RepositoryReachable", "True", "Succeeded", "", 2),
                cond("ToolJetReachable", "True", "Succeeded", "", 2),
            ],
        })),
    );
    assert_health(&config, "Healthy", "Repository and ToolJet reachable");
}

#[test]
fn progressing_without_status() {
    assert_health(
        &git_sync_config(1, None),
        "Progressing",
        "Waiting for the operator",
    );
    assert_health(
        &app_sync(1, Some(json!({ "conditions": [] }))),
        "Progressing",
        "Waiting for the operator",
    );
}

#[test]
fn progressing_while_generation_is_stale() {
    // Ready=True, even Stalled=True, describe generation 2; the spec is now at 3.
    let obj = app_sync(
        3,
        Some(json!({
            "observedGeneration": 2,
            "conditions": [
                cond("Ready", "False", "NameConflict", "old problem", 2),
                cond("Stalled", "True", "NameConflict", "old problem", 2),
            ],
        })),
    );
    assert_health(&obj, "Progressing", "generation 3 (observed 2)");

    // Without status.observedGeneration the Ready condition's observedGeneration counts.
    let obj = app_sync(
        5,
        Some(json!({ "conditions": [cond("Ready", "True", "Succeeded", "ok", 4)] })),
    );
    assert_health(&obj, "Progressing", "generation 5 (observed 4)");
    let obj = app_sync(
        5,
        Some(json!({ "conditions": [cond("Ready", "True", "Succeeded", "ok", 5)] })),
    );
    assert_health(&obj, "Healthy", "ok");
}

#[test]
fn progressing_while_reconciling_or_awaiting_the_deploy_key() {
    let obj = app_sync(
        2,
        Some(json!({
            "observedGeneration": 2,
            "conditions": [
                cond("Ready", "Unknown", "Progressing", "Exporting Sales Dashboard v3", 2),
                cond("Reconciling", "True", "Progressing", "", 2),
            ],
        })),
    );
    assert_health(&obj, "Progressing", "Exporting Sales Dashboard v3");

    let config = git_sync_config(
        1,
        Some(json!({
            "observedGeneration": 1,
            "conditions": [
                cond("Ready", "False", "AwaitingDeployKey",
                     "Add the public key in status.publicKey as a deploy key with write access", 1),
                cond("DeployKeyReady", "True", "Succeeded", "", 1),
                cond("RepositoryReachable", "False", "AwaitingDeployKey", "", 1),
            ],
        })),
    );
    assert_health(&config, "Progressing", "as a deploy key with write access");

    let retrying = app_sync(
        1,
        Some(json!({
            "observedGeneration": 1,
            "conditions": [cond("Ready", "False", "Retrying", "push rejected, retrying in 20s", 1)],
        })),
    );
    assert_health(&retrying, "Progressing", "retrying in 20s");
}

#[test]
fn degraded_when_stalled() {
    let obj = git_sync_config(
        3,
        Some(json!({
            "observedGeneration": 3,
            "conditions": [
                cond("Ready", "False", "HostKeyMismatch",
                     "host key of github.com changed; refusing to connect", 3),
                cond("Stalled", "True", "HostKeyMismatch", "", 3),
            ],
        })),
    );
    assert_health(&obj, "Degraded", "host key of github.com changed");
}

#[test]
fn degraded_on_name_conflict() {
    let obj = app_sync(
        1,
        Some(json!({
            "observedGeneration": 1,
            "conditions": [
                cond("Ready", "False", "NameConflict",
                     "an app named Sales Dashboard already exists and is not owned by this AppSync", 1),
                cond("Synced", "False", "NameConflict", "", 1),
            ],
        })),
    );
    assert_health(&obj, "Degraded", "already exists and is not owned");
}

#[test]
fn suspended_when_suspended_or_disabled() {
    let mut obj = app_sync(
        2,
        Some(json!({
            "observedGeneration": 1,
            "conditions": [cond("Ready", "False", "NameConflict", "stale", 1)],
        })),
    );
    obj["spec"]["suspend"] = json!(true);
    assert_health(&obj, "Suspended", "suspended");

    let mut config = git_sync_config(
        2,
        Some(json!({
            "observedGeneration": 2,
            "conditions": [cond("Ready", "True", "Succeeded", "ok", 2)],
        })),
    );
    config["spec"]["enabled"] = json!(false);
    assert_health(&config, "Suspended", "disabled");

    // `enabled` is a GitSyncConfig field and `suspend` an AppSync one; neither leaks to the other kind.
    let mut config = git_sync_config(1, None);
    config["spec"]["suspend"] = json!(true);
    assert_health(&config, "Progressing", "Waiting for the operator");
}

#[test]
fn argocd_cm_patch_embeds_the_script_for_both_kinds() {
    let script = std::fs::read_to_string(health_script()).unwrap();
    let patch: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("examples/argocd/argocd-cm-patch.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(patch["metadata"]["name"].as_str(), Some("argocd-cm"));
    for kind in ["AppSync", "GitSyncConfig"] {
        let key = format!("resource.customizations.health.gitsync.tooljet.io_{kind}");
        assert_eq!(
            patch["data"][key.as_str()].as_str(),
            Some(script.as_str()),
            "{key} in argocd-cm-patch.yaml must be health.lua verbatim"
        );
    }
}

#[test]
fn application_syncs_without_pruning_and_heals() {
    let path: &Path = &root().join("examples/argocd/application.yaml");
    let app: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(app["kind"].as_str(), Some("Application"));
    let automated = &app["spec"]["syncPolicy"]["automated"];
    assert_eq!(automated["prune"].as_bool(), Some(false));
    assert_eq!(automated["selfHeal"].as_bool(), Some(true));
    assert_eq!(
        app["spec"]["destination"]["namespace"].as_str(),
        Some("tooljet-prod")
    );
}
