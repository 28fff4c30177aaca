//! Reconcile-level tests: one pass of each reconciler against an in-memory Kubernetes API,
//! with the real parts behind it (OpenSSH sshd + git-shell, the ToolJet emulator). Each test
//! asserts the exact status patch and Events of the pass. Needs root (sshd, the `git` user).

mod fake_api;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use fake_api::{FakeApi, Write};
use serde_json::{json, Value};
use tooljet_gitsync_operator::api::{self, AppSync, GitSyncConfig};
use tooljet_gitsync_operator::controller::{appsync, gitsyncconfig, Context, Options};
use tooljet_gitsync_testkit::emulator::{Emulator, EmulatorConfig};
use tooljet_gitsync_testkit::gitserver::{Access, GitServer};

const NS: &str = "team";

fn gsc_path(name: &str) -> String {
    format!("/apis/gitsync.tooljet.io/v1alpha1/namespaces/{NS}/gitsyncconfigs/{name}")
}
fn aps_path(name: &str) -> String {
    format!("/apis/gitsync.tooljet.io/v1alpha1/namespaces/{NS}/appsyncs/{name}")
}
fn secret_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/secrets/{name}")
}

struct World {
    api: Arc<FakeApi>,
    ctx: Arc<Context>,
    git: GitServer,
    tooljet: Emulator,
    /// AppSyncs whose handed-over push the worker answered (what re-runs them in the operator).
    answers: tokio::sync::Mutex<
        tokio::sync::mpsc::UnboundedReceiver<kube::runtime::reflector::ObjectRef<AppSync>>,
    >,
    _data: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let api = Arc::new(FakeApi::default());
        let git = GitServer::start().expect("sshd git server");
        git.create_repo("apps").unwrap();
        let tooljet = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let token = base64::engine::general_purpose::STANDARD.encode(tooljet.token().unwrap());
        api.put(&secret_path("tj"), json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "tj", "namespace": NS, "resourceVersion": "1"}, "data": {"token": token}}));
        let data = tempfile::tempdir().unwrap();
        let options = Options {
            data_dir: data.path().to_path_buf(),
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(3),
            git_timeout: Duration::from_secs(30),
            ..Options::default()
        };
        let ctx = Arc::new(Context::new(api.client(), options));
        let answers = tokio::sync::Mutex::new(ctx.handoff.answered().expect("answer channel"));
        World {
            api,
            ctx,
            answers,
            git,
            tooljet,
            _data: data,
        }
    }

    fn add_config(&self, name: &str, workspace: &str) {
        self.api.put(&gsc_path(name), json!({
            "apiVersion": "gitsync.tooljet.io/v1alpha1", "kind": "GitSyncConfig",
            "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "generation": 1,
                         "resourceVersion": "1", "finalizers": [api::FINALIZER]},
            "spec": {"repository": {"url": self.git.url("apps"), "branch": "main"},
                     "tooljet": {"url": self.tooljet.url(), "workspace": workspace, "credentialsSecretRef": {"name": "tj"}},
                     "interval": "10s"},
        }));
    }

    fn add_appsync(&self, name: &str, spec: Value) {
        self.api.put(&aps_path(name), json!({
            "apiVersion": "gitsync.tooljet.io/v1alpha1", "kind": "AppSync",
            "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "generation": 1,
                         "resourceVersion": "1", "finalizers": [api::FINALIZER]},
            "spec": spec,
        }));
    }

    async fn reconcile_config(&self, name: &str) -> Vec<Write> {
        let obj: GitSyncConfig =
            serde_json::from_value(self.api.get(&gsc_path(name)).unwrap()).unwrap();
        gitsyncconfig::reconcile(Arc::new(obj), self.ctx.clone())
            .await
            .expect("reconcile");
        self.api.take_writes()
    }

    async fn reconcile_appsync(&self, name: &str) -> Vec<Write> {
        let obj: AppSync = serde_json::from_value(self.api.get(&aps_path(name)).unwrap()).unwrap();
        appsync::reconcile(Arc::new(obj), self.ctx.clone())
            .await
            .expect("reconcile");
        self.api.take_writes()
    }

    /// A Push pass that commits: the first pass hands the export to the repository worker and
    /// writes nothing; the pass its answer starts writes the status. Returns that pass's writes.
    async fn push_appsync(&self, name: &str) -> Vec<Write> {
        let mut woken = self.answers.lock().await;
        let handed = self.reconcile_appsync(name).await;
        assert_eq!(
            sequence(&handed),
            Vec::<String>::new(),
            "handed over: no write yet"
        );
        let answered = tokio::time::timeout(Duration::from_secs(60), woken.recv())
            .await
            .expect("the worker answers")
            .expect("answer channel open");
        assert_eq!(answered.name, name);
        self.reconcile_appsync(name).await
    }

    /// A GitSyncConfig brought to Ready (key generated and authorized), its writes dropped.
    async fn ready_config(&self, name: &str, workspace: &str) {
        self.add_config(name, workspace);
        self.reconcile_config(name).await;
        let public = self.api.get(&gsc_path(name)).unwrap()["status"]["publicKey"]
            .as_str()
            .unwrap()
            .to_string();
        self.git.authorize(&public, Access::ReadWrite).unwrap();
        self.reconcile_config(name).await;
        assert_eq!(
            ready(&self.api.get(&gsc_path(name)).unwrap()),
            ("True".into(), "Ready".into())
        );
    }
}

fn ready(obj: &Value) -> (String, String) {
    let c = obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap_or_default();
    (
        c["status"].as_str().unwrap_or_default().into(),
        c["reason"].as_str().unwrap_or_default().into(),
    )
}

/// The writes as `METHOD kind`.
fn sequence(writes: &[Write]) -> Vec<String> {
    writes.iter().map(Write::what).collect()
}

/// The status patch's conditions as (type, status, reason).
fn conditions(w: &Write) -> Vec<(String, String, String)> {
    assert!(
        w.path.ends_with("/status")
            && w.method == "PATCH"
            && w.content_type.starts_with("application/apply-patch"),
        "{} is no server-side apply of the status",
        w.what()
    );
    w.body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
                c["reason"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// The Events of the writes as (type, reason).
fn events(writes: &[Write]) -> Vec<(String, String)> {
    writes
        .iter()
        .filter(|w| w.path.contains("/events"))
        .map(|w| {
            (
                w.body["type"].as_str().unwrap_or_default().into(),
                w.body["reason"].as_str().unwrap_or_default().into(),
            )
        })
        .collect()
}

fn c(t: &str, s: &str, r: &str) -> (String, String, String) {
    (t.into(), s.into(), r.into())
}
fn e(t: &str, r: &str) -> (String, String) {
    (t.into(), r.into())
}

#[tokio::test(flavor = "multi_thread")]
async fn gitsyncconfig_awaiting_deploy_key_then_ready() {
    let w = World::start().await;
    w.add_config("sales", "my-workspace");

    let writes = w.reconcile_config("sales").await;
    assert_eq!(
        sequence(&writes),
        [
            "POST secrets",
            "PATCH secrets",
            "PATCH gitsyncconfigs/status",
            "POST events",
            "POST events",
            "POST events"
        ]
    );
    assert_eq!(
        conditions(&writes[2]),
        [
            c("Ready", "False", "AwaitingDeployKey"),
            c("DeployKeyReady", "True", "KeyAvailable"),
            c("RepositoryReachable", "False", "AwaitingDeployKey"),
            c("ToolJetReachable", "True", "Connected"),
            c("Reconciling", "True", "AwaitingDeployKey"),
        ]
    );
    assert_eq!(
        events(&writes),
        [
            e("Normal", "KeyGenerated"),
            e("Normal", "HostKeyRecorded"),
            e("Normal", "AwaitingDeployKey")
        ]
    );
    let status = &writes[2].body["status"];
    let public = status["publicKey"].as_str().unwrap();
    assert!(status["publicKeyFingerprint"]
        .as_str()
        .unwrap()
        .starts_with("SHA256:"));
    assert_eq!(status["tooljet"]["version"], "3.16.0");
    assert_eq!(status["observedGeneration"], 1);
    // The private key went to the Secret only: not in the status, not in any Event.
    let secret = w.api.get(&secret_path("sales-deploy-key")).unwrap();
    let identity = secret["data"]["identity"].as_str().unwrap();
    for write in &writes[2..] {
        assert!(!write.body.to_string().contains(identity));
    }
    assert!(
        !secret["data"]["known_hosts"].as_str().unwrap().is_empty(),
        "host key recorded in the Secret"
    );

    w.git.authorize(public, Access::ReadWrite).unwrap();
    let writes = w.reconcile_config("sales").await;
    assert_eq!(
        sequence(&writes),
        ["PATCH gitsyncconfigs/status", "POST events"]
    );
    assert_eq!(
        conditions(&writes[0]),
        [
            c("Ready", "True", "Ready"),
            c("DeployKeyReady", "True", "KeyAvailable"),
            c("RepositoryReachable", "True", "Connected"),
            c("ToolJetReachable", "True", "Connected"),
        ]
    );
    assert_eq!(events(&writes), [e("Normal", "Ready")]);
    assert!(w.api.unexpected().is_empty(), "{:?}", w.api.unexpected());
}

#[tokio::test(flavor = "multi_thread")]
async fn push_commits_then_is_up_to_date() {
    let w = World::start().await;
    w.ready_config("sales", "my-workspace").await;
    let app = w.tooljet.create_app("Sales", None).unwrap();
    w.add_appsync(
        "sales-push",
        json!({"gitSyncConfigRef": {"name": "sales"}, "app": "Sales", "direction": "Push"}),
    );

    let writes = w.push_appsync("sales-push").await;
    assert_eq!(sequence(&writes), ["PATCH appsyncs/status", "POST events"]);
    assert_eq!(
        conditions(&writes[0]),
        [
            c("Ready", "True", "Committed"),
            c("Synced", "True", "Committed")
        ]
    );
    assert_eq!(events(&writes), [e("Normal", "Committed")]);
    let head = w
        .git
        .git("apps", &["rev-parse", "main"])
        .unwrap()
        .trim()
        .to_string();
    let status = &writes[0].body["status"];
    assert_eq!(status["lastCommit"]["sha"], head.as_str());
    assert_eq!(status["lastCommit"]["message"], "App creation");
    assert_eq!(status["app"]["id"], app.id.as_str());
    assert_eq!(status["git"]["gitAppId"], app.id.as_str());
    assert_eq!(status["git"]["head"], head.as_str());
    assert!(status["git"]["path"]
        .as_str()
        .unwrap()
        .starts_with("Sales/"));

    let writes = w.reconcile_appsync("sales-push").await;
    assert_eq!(sequence(&writes), ["PATCH appsyncs/status", "POST events"]);
    assert_eq!(
        conditions(&writes[0]),
        [
            c("Ready", "True", "UpToDate"),
            c("Synced", "True", "UpToDate")
        ]
    );
    assert_eq!(events(&writes), [e("Normal", "UpToDate")]);
    assert_eq!(
        w.git.git("apps", &["rev-parse", "main"]).unwrap().trim(),
        head,
        "no second commit"
    );
    assert_eq!(writes[0].body["status"]["lastCommit"]["sha"], head.as_str());
    assert!(w.api.unexpected().is_empty(), "{:?}", w.api.unexpected());
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_imports_and_refuses_a_name_it_does_not_own() {
    let w = World::start().await;
    w.ready_config("sales", "my-workspace").await;
    w.ready_config("staging", "staging").await;
    w.tooljet.create_app("Sales", None).unwrap();
    w.add_appsync(
        "sales-push",
        json!({"gitSyncConfigRef": {"name": "sales"}, "app": "Sales", "direction": "Push"}),
    );
    w.push_appsync("sales-push").await;
    let head = w
        .git
        .git("apps", &["rev-parse", "main"])
        .unwrap()
        .trim()
        .to_string();

    // Into the staging workspace: imported, read-only.
    w.add_appsync(
        "sales-pull",
        json!({"gitSyncConfigRef": {"name": "staging"}, "app": "Sales", "direction": "Pull"}),
    );
    let writes = w.reconcile_appsync("sales-pull").await;
    // The swap journal: recorded before the import and after it (a first import records no
    // step after the new app took the name: the next step follows from the workspace alone);
    // removed; then the pass's status and its Event.
    let mut expected = vec!["PATCH appsyncs/status"; 4];
    expected.push("POST events");
    assert_eq!(sequence(&writes), expected);
    let steps: Vec<&str> = writes[..2]
        .iter()
        .map(|w| w.body["status"]["swap"]["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["Importing", "Imported"]);
    assert!(writes[0].body["status"]["swap"]["tempName"]
        .as_str()
        .unwrap()
        .starts_with("__gitsync_tmp_"));
    assert_eq!(
        writes[2].body,
        json!({"status": {"swap": null}}),
        "the closed journal is removed"
    );
    assert_eq!(
        conditions(&writes[3]),
        [
            c("Ready", "True", "Pulled"),
            c("Synced", "True", "Pulled"),
            c("UpdateAvailable", "False", "UpToDate")
        ]
    );
    assert_eq!(events(&writes), [e("Normal", "Pulled")]);
    let status = &writes[3].body["status"];
    assert!(status.get("swap").is_none());
    assert_eq!(status["owned"]["direction"], "Pull");
    assert_eq!(status["lastCommit"]["sha"], head.as_str());
    assert_eq!(status["lastPulledGeneration"], 1);
    let staging = w
        .tooljet
        .workspaces()
        .into_iter()
        .find(|ws| ws.slug == "staging")
        .unwrap();
    let imported: Vec<_> = w
        .tooljet
        .apps_in(&staging.id)
        .into_iter()
        .filter(|a| a.name == "Sales")
        .collect();
    assert_eq!(imported.len(), 1);
    assert_eq!(status["app"]["id"], imported[0].id.as_str());

    // Into the source workspace, where "Sales" is the developer's app: left untouched.
    let before = w.tooljet.apps();
    w.add_appsync(
        "back-into-dev",
        json!({"gitSyncConfigRef": {"name": "sales"}, "app": "Sales", "direction": "Pull"}),
    );
    let writes = w.reconcile_appsync("back-into-dev").await;
    assert_eq!(sequence(&writes), ["PATCH appsyncs/status", "POST events"]);
    assert_eq!(
        conditions(&writes[0]),
        [
            c("Ready", "False", "NameConflict"),
            c("Synced", "False", "NameConflict"),
            c("Stalled", "True", "NameConflict")
        ]
    );
    assert_eq!(events(&writes), [e("Warning", "NameConflict")]);
    assert_eq!(w.tooljet.apps().len(), before.len());
    assert!(w.api.unexpected().is_empty(), "{:?}", w.api.unexpected());
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_specs_touch_nothing() {
    let w = World::start().await;
    w.ready_config("sales", "my-workspace").await;
    let head_before = w.git.git("apps", &["for-each-ref"]).unwrap();
    for (name, spec, reason) in [
        (
            "empty-app",
            json!({"gitSyncConfigRef": {"name": "sales"}, "app": "", "direction": "Push"}),
            "InvalidApp",
        ),
        (
            "option-revision",
            json!({"gitSyncConfigRef": {"name": "sales"}, "app": "Sales", "direction": "Pull", "pull": {"revision": "--upload-pack=touch /tmp/pwned"}}),
            "InvalidRevision",
        ),
        (
            "other-namespace",
            json!({"gitSyncConfigRef": {"name": "sales", "namespace": "prod"}, "app": "Sales", "direction": "Push"}),
            "CrossNamespaceRefDenied",
        ),
    ] {
        w.add_appsync(name, spec);
        let writes = w.reconcile_appsync(name).await;
        assert_eq!(
            sequence(&writes),
            ["PATCH appsyncs/status", "POST events"],
            "{name}"
        );
        assert_eq!(
            conditions(&writes[0]),
            [
                c("Ready", "False", reason),
                c("Synced", "False", reason),
                c("Stalled", "True", reason)
            ],
            "{name}"
        );
        assert_eq!(events(&writes), [e("Warning", reason)], "{name}");
        assert!(!writes[0].body["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .is_empty());
    }
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    assert_eq!(
        w.git.git("apps", &["for-each-ref"]).unwrap(),
        head_before,
        "nothing written to git"
    );
    assert!(w.tooljet.apps().is_empty(), "nothing written to ToolJet");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_secret_create_is_a_condition_not_a_silent_retry() {
    let w = World::start().await;
    w.api
        .deny("POST", &format!("/api/v1/namespaces/{NS}/secrets"));
    w.add_config("sales", "my-workspace");
    let writes = w.reconcile_config("sales").await;
    assert_eq!(
        sequence(&writes),
        ["POST secrets", "PATCH gitsyncconfigs/status", "POST events"]
    );
    let conds = conditions(&writes[1]);
    assert_eq!(conds[0], c("Ready", "False", "KubernetesAPIRefused"));
    assert_eq!(
        conds[1],
        c("DeployKeyReady", "False", "KubernetesAPIRefused")
    );
    let msg = writes[1].body["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("403") && msg.contains("RBAC"), "{msg}");
    assert_eq!(events(&writes), [e("Warning", "KubernetesAPIRefused")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_pull_closes_its_open_swap_and_starts_nothing() {
    let w = World::start().await;
    w.ready_config("sales", "my-workspace").await;
    w.tooljet.create_app("Sales", None).unwrap();
    w.add_appsync(
        "sales-push",
        json!({"gitSyncConfigRef": {"name": "sales"}, "app": "Sales", "direction": "Push"}),
    );
    w.push_appsync("sales-push").await;
    w.ready_config("staging", "staging").await;
    w.add_appsync(
        "sales-pull",
        json!({"gitSyncConfigRef": {"name": "staging"}, "app": "Sales", "direction": "Pull", "suspend": true}),
    );
    // A pass killed while importing left this journal behind.
    let mut obj = w.api.get(&aps_path("sales-pull")).unwrap();
    obj["status"] = json!({"swap": {
        "step": "Importing", "commit": {"sha": "abc", "message": "m", "author": "a"},
        "name": "Sales", "tempName": "__gitsync_tmp_1", "parkedName": "__gitsync_old_1",
        "parkedSlug": "gitsync-old-1", "gitAppId": "g", "versionName": "v1", "versionId": "v",
        "startedAt": "2026-01-01T00:00:00Z"}});
    w.api.put(&aps_path("sales-pull"), obj);
    let writes = w.reconcile_appsync("sales-pull").await;
    let last = writes
        .iter()
        .rev()
        .find(|x| {
            x.path.ends_with("/status") && x.content_type.starts_with("application/apply-patch")
        })
        .unwrap();
    assert_eq!(conditions(last), [c("Ready", "False", "Suspended")]);
    assert!(
        last.body["status"].get("swap").is_none(),
        "the journal is closed"
    );
    let staging = w
        .tooljet
        .workspaces()
        .into_iter()
        .find(|ws| ws.slug == "staging")
        .unwrap();
    assert!(
        w.tooljet.apps_in(&staging.id).is_empty(),
        "nothing imported while suspended"
    );
}
