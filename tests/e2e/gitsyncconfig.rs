//! GitSyncConfig end to end: deploy keys, host keys, the connection check, bad input, deletion.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use tooljet_gitsync_operator::api::GitSyncConfig;
use tooljet_gitsync_operator::keys;
use tooljet_gitsync_testkit::gitserver::{Access, GitServer};

use crate::support::{
    self, apply, event_notes, has, namespace, poke, ready_reason, trial, wait, wait_events,
    wait_gsc, Env,
};

pub fn trials() -> Vec<libtest_mimic::Trial> {
    vec![
        trial(
            "gsc_key_generated_awaiting_then_ready",
            key_generated_awaiting_then_ready,
        ),
        trial(
            "gsc_host_key_changed_is_refused",
            host_key_changed_is_refused,
        ),
        trial("gsc_pinned_known_hosts", pinned_known_hosts),
        trial(
            "gsc_disabled_makes_no_git_traffic",
            disabled_makes_no_git_traffic,
        ),
        trial(
            "gsc_delete_removes_generated_secret_only",
            delete_removes_generated_secret_only,
        ),
        trial(
            "gsc_delete_drops_the_repository_worker_when_unshared",
            delete_drops_the_repository_worker_when_unshared,
        ),
        trial(
            "gsc_bring_your_own_secret_untouched",
            bring_your_own_secret_untouched,
        ),
        trial("gsc_key_rotation", key_rotation),
        trial("gsc_read_only_key", read_only_key),
        trial(
            "gsc_bad_input_gets_clear_conditions",
            bad_input_gets_clear_conditions,
        ),
    ]
}

pub fn manifest(name: &str, url: &str, extra_repo: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: gitsync.tooljet.io/v1alpha1
kind: GitSyncConfig
metadata:
  name: {name}
spec:
  repository:
    url: "{url}"
    branch: main
{extra_repo}  tooljet:
    url: {tooljet}
    workspace: my-workspace
    credentialsSecretRef: {{ name: tooljet-api }}
  interval: 1m
{extra_spec}"#,
        tooljet = support::tooljet_url()
    )
}

async fn secret(env: &Env, ns: &str, name: &str) -> Result<Option<Secret>> {
    Ok(Api::<Secret>::namespaced(env.client.clone(), ns)
        .get_opt(name)
        .await?)
}

fn data(s: &Secret, key: &str) -> String {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

async fn key_generated_awaiting_then_ready(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "gsc-ready").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    apply::<GitSyncConfig>(c, &ns, &manifest("sales", &url, "", "")).await?;

    let g = wait_gsc(c, &ns, "sales", "AwaitingDeployKey", |g| {
        has(g, "RepositoryReachable", "False", "AwaitingDeployKey")
    })
    .await?;
    let st = g.status.clone().context("status")?;
    let public = st.public_key.clone().context("publicKey")?;
    ensure!(
        public.starts_with("ssh-ed25519 ") && public.ends_with(" tooljet-gitsync/gsc-ready/sales"),
        "{public}"
    );
    ensure!(st
        .public_key_fingerprint
        .as_deref()
        .is_some_and(|f| f.starts_with("SHA256:")));
    ensure!(has(&g, "Ready", "False", "AwaitingDeployKey"));
    ensure!(has(&g, "Reconciling", "True", "AwaitingDeployKey"));
    let msg = &support::condition(&st.conditions, "Ready")
        .context("ready")?
        .message;
    ensure!(
        msg.contains("status.publicKey") && msg.contains("write access"),
        "{msg}"
    );

    // The Secret: Flux's keys, labelled and owned, host key recorded on first contact.
    let s = secret(&env, &ns, "sales-deploy-key")
        .await?
        .context("secret")?;
    ensure!(data(&s, "identity").starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    ensure!(data(&s, "identity.pub").trim() == public);
    ensure!(
        keys::inspect(data(&s, "identity").as_bytes())?.fingerprint
            == st.public_key_fingerprint.clone().unwrap_or_default()
    );
    let labels = s.metadata.labels.clone().unwrap_or_default();
    ensure!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some("tooljet-gitsync-operator")
    );
    let owners = s.metadata.owner_references.clone().unwrap_or_default();
    ensure!(
        owners.len() == 1
            && owners[0].kind == "GitSyncConfig"
            && owners[0].controller == Some(true)
    );
    let host_line = git.known_hosts_line()?;
    let host_key = host_line
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string();
    wait(Duration::from_secs(20), || {
        let env = env.clone();
        let (ns, hk) = (ns.clone(), host_key.clone());
        async move {
            let s = secret(&env, &ns, "sales-deploy-key").await.ok()??;
            data(&s, "known_hosts").contains(&hk).then_some(())
        }
    })
    .await
    .context("host key recorded in the Secret")?;

    // Authorize: the retry loop finds it without any poke.
    git.authorize(&public, Access::ReadWrite)?;
    let g = wait_gsc(c, &ns, "sales", "Ready", |g| {
        has(g, "Ready", "True", "Ready")
    })
    .await?;
    ensure!(has(&g, "RepositoryReachable", "True", "Connected"));
    ensure!(has(&g, "ToolJetReachable", "True", "Connected"));
    let tj = g
        .status
        .as_ref()
        .and_then(|s| s.tooljet.clone())
        .context("tooljet status")?;
    ensure!(tj.version.as_deref() == Some("3.16.0"), "{tj:?}");
    ensure!(
        tj.workspace_id.as_deref() == Some(env.tooljet.workspace().id.as_str()),
        "{tj:?}"
    );
    ensure!(support::condition(
        &g.status.clone().unwrap_or_default().conditions,
        "Reconciling"
    )
    .is_none());
    ensure!(g.status.as_ref().and_then(|s| s.observed_generation) == g.metadata.generation);
    let repo = g
        .status
        .as_ref()
        .and_then(|s| s.repository.clone())
        .context("repository status")?;
    ensure!(
        repo.head.is_none() && repo.branch == "main",
        "empty repository has no head: {repo:?}"
    );
    // Nothing was written to the repository by the check.
    ensure!(
        git.git("apps", &["for-each-ref"])?.trim().is_empty(),
        "check wrote to the repo"
    );
    wait_events(
        c,
        &ns,
        "sales",
        &["KeyGenerated", "Ready", "HostKeyRecorded"],
    )
    .await?;
    // The private key is nowhere in Events or status.
    let identity = data(&s, "identity");
    let secret_body = identity.lines().nth(2).unwrap_or("-");
    let notes = event_notes(c, &ns).await?;
    ensure!(!notes.contains(secret_body));
    ensure!(!serde_json::to_string(&g.status)?.contains(secret_body));
    Ok(())
}

pub async fn ready_config(
    env: &Env,
    ns: &str,
    git: &GitServer,
    url: &str,
    extra_repo: &str,
) -> Result<GitSyncConfig> {
    ready_config_with(env, ns, git, &manifest("sales", url, extra_repo, "")).await
}

/// Applies a GitSyncConfig named `sales`, authorizes its key and waits until it is Ready.
pub async fn ready_config_with(
    env: &Env,
    ns: &str,
    git: &GitServer,
    manifest: &str,
) -> Result<GitSyncConfig> {
    let c = &env.client;
    apply::<GitSyncConfig>(c, ns, manifest).await?;
    let g = wait_gsc(c, ns, "sales", "public key", |g| {
        g.status.as_ref().is_some_and(|s| s.public_key.is_some())
    })
    .await?;
    let public = g.status.and_then(|s| s.public_key).context("publicKey")?;
    git.authorize(&public, Access::ReadWrite)?;
    poke::<GitSyncConfig>(c, ns, "sales").await?;
    wait_gsc(c, ns, "sales", "Ready", |g| {
        has(g, "Ready", "True", "Ready")
    })
    .await
}

async fn host_key_changed_is_refused(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "gsc-hostkey").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    ready_config(&env, &ns, &git, &url, "").await?;
    let recorded = data(
        &secret(&env, &ns, "sales-deploy-key")
            .await?
            .context("secret")?,
        "known_hosts",
    );

    git.restart_with_new_host_key()?;
    poke::<GitSyncConfig>(c, &ns, "sales").await?;
    let g = wait_gsc(c, &ns, "sales", "HostKeyMismatch", |g| {
        has(g, "Ready", "False", "HostKeyMismatch")
    })
    .await?;
    ensure!(has(&g, "Stalled", "True", "HostKeyMismatch"));
    ensure!(has(&g, "RepositoryReachable", "False", "HostKeyMismatch"));
    // Never silently accepted: the recorded key is unchanged.
    let now = data(
        &secret(&env, &ns, "sales-deploy-key")
            .await?
            .context("secret")?,
        "known_hosts",
    );
    ensure!(now == recorded, "known_hosts changed");
    wait_events(c, &ns, "sales", &["HostKeyMismatch"]).await?;
    Ok(())
}

async fn pinned_known_hosts(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "gsc-pinned").await?;
    let git = GitServer::start()?;
    let other = GitServer::start()?;
    let url = git.create_repo("apps")?;
    let pinned = format!("    knownHosts: \"{}\"\n", git.known_hosts_line()?.trim());
    ready_config(&env, &ns, &git, &url, &pinned).await?;
    // Pin another server's key: refused, with a message about the pinned keys.
    let wrong = format!(
        "    knownHosts: \"{}\"\n",
        other
            .known_hosts_line()?
            .trim()
            .replace(&other.port().to_string(), &git.port().to_string())
    );
    apply::<GitSyncConfig>(c, &ns, &manifest("sales", &url, &wrong, "")).await?;
    let g = wait_gsc(c, &ns, "sales", "HostKeyMismatch", |g| {
        has(g, "Ready", "False", "HostKeyMismatch")
    })
    .await?;
    let msg = support::condition(&g.status.unwrap_or_default().conditions, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(msg.contains("spec.repository.knownHosts"), "{msg}");
    Ok(())
}

async fn disabled_makes_no_git_traffic(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "gsc-disabled").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    apply::<GitSyncConfig>(c, &ns, &manifest("sales", &url, "", "  enabled: false\n")).await?;
    let g = wait_gsc(c, &ns, "sales", "Disabled", |g| {
        has(g, "Ready", "False", "Disabled")
    })
    .await?;
    ensure!(
        g.status.as_ref().is_some_and(|s| s.public_key.is_some()),
        "key is generated while disabled"
    );
    ensure!(has(&g, "RepositoryReachable", "Unknown", "Disabled"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The only connection is the test kit's own readiness probe; no SSH session was made.
    let log = git.log();
    ensure!(
        !log.contains("publickey") && log.matches("Connection from").count() <= 1,
        "git traffic while disabled:\n{log}"
    );
    // Enabling connects.
    git.authorize(
        &g.status.and_then(|s| s.public_key).unwrap_or_default(),
        Access::ReadWrite,
    )?;
    apply::<GitSyncConfig>(c, &ns, &manifest("sales", &url, "", "  enabled: true\n")).await?;
    wait_gsc(c, &ns, "sales", "Ready", |g| {
        has(g, "Ready", "True", "Ready")
    })
    .await?;
    Ok(())
}

async fn delete_removes_generated_secret_only(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "gsc-delete").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    // A repository with content, to prove deletion never touches it.
    git.commit_files("apps", "main", &[("README.md", b"hello")], "init")?;
    let before = git.git("apps", &["for-each-ref"])?;
    let g = ready_config(&env, &ns, &git, &url, "").await?;
    ensure!(
        g.status
            .and_then(|s| s.repository)
            .and_then(|r| r.head)
            .is_some(),
        "head of a non-empty repo is shown"
    );
    Api::<GitSyncConfig>::namespaced(c.clone(), &ns)
        .delete("sales", &DeleteParams::default())
        .await?;
    wait(Duration::from_secs(30), || {
        let env = env.clone();
        let ns = ns.clone();
        async move {
            let gone_gsc = Api::<GitSyncConfig>::namespaced(env.client.clone(), &ns)
                .get_opt("sales")
                .await
                .ok()?
                .is_none();
            let gone_secret = secret(&env, &ns, "sales-deploy-key").await.ok()?.is_none();
            (gone_gsc && gone_secret).then_some(())
        }
    })
    .await
    .context("GitSyncConfig and its generated Secret deleted (no garbage collector runs here)")?;
    ensure!(
        git.git("apps", &["for-each-ref"])? == before,
        "repository changed by deletion"
    );
    Ok(())
}

/// Applies GitSyncConfig `name` for `url`, authorizes its key and waits until it is Ready.
async fn ready_named(env: &Env, ns: &str, git: &GitServer, name: &str, url: &str) -> Result<()> {
    let c = &env.client;
    apply::<GitSyncConfig>(c, ns, &manifest(name, url, "", "")).await?;
    let g = wait_gsc(c, ns, name, "public key", |g| {
        g.status.as_ref().is_some_and(|s| s.public_key.is_some())
    })
    .await?;
    let public = g.status.and_then(|s| s.public_key).context("publicKey")?;
    git.authorize(&public, Access::ReadWrite)?;
    poke::<GitSyncConfig>(c, ns, name).await?;
    wait_gsc(c, ns, name, "Ready", |g| has(g, "Ready", "True", "Ready")).await?;
    Ok(())
}

/// Deletes GitSyncConfig `name` and waits until it is gone (its finalizer ran).
async fn delete_config(env: &Env, ns: &str, name: &str) -> Result<()> {
    let api = Api::<GitSyncConfig>::namespaced(env.client.clone(), ns);
    api.delete(name, &DeleteParams::default()).await?;
    wait(Duration::from_secs(30), || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok()?.is_none().then_some(()) }
    })
    .await
    .with_context(|| format!("GitSyncConfig {name} deleted"))
}

async fn delete_drops_the_repository_worker_when_unshared(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "gsc-release").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    // Two configs on one repository (another spelling of the same URL), one worker.
    let spelled = format!("{url}/");
    ready_named(&env, &ns, &git, "first", &url).await?;
    ready_named(&env, &ns, &git, "second", &spelled).await?;
    let identity = tooljet_gitsync_operator::git::RepoUrl::parse(&url)?.identity();
    ensure!(
        tooljet_gitsync_operator::git::RepoUrl::parse(&spelled)?.identity() == identity,
        "{spelled} names the same repository"
    );
    ensure!(
        env.ctx.workers.contains(&identity),
        "the configs' worker runs"
    );
    delete_config(&env, &ns, "first").await?;
    ensure!(
        env.ctx.workers.contains(&identity),
        "the other config still uses the worker"
    );
    delete_config(&env, &ns, "second").await?;
    ensure!(
        !env.ctx.workers.contains(&identity),
        "the last config's deletion drops the worker"
    );
    Ok(())
}

async fn bring_your_own_secret_untouched(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "gsc-byo").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    let key = keys::generate(tooljet_gitsync_operator::api::KeyType::Ed25519, "mine")?;
    let secrets: Api<Secret> = Api::namespaced(c.clone(), &ns);
    let mine: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "my-key", "annotations": {"owner": "platform-team"}},
        "stringData": {"identity": key.private_openssh.as_str()}
    }))?;
    let created = secrets.create(&PostParams::default(), &mine).await?;
    git.authorize(&key.info.public_openssh, Access::ReadWrite)?;
    apply::<GitSyncConfig>(
        c,
        &ns,
        &manifest("sales", &url, "", "  deployKey:\n    secretName: my-key\n"),
    )
    .await?;
    let g = wait_gsc(c, &ns, "sales", "Ready", |g| {
        has(g, "Ready", "True", "Ready")
    })
    .await?;
    let st = g.status.context("status")?;
    ensure!(st.public_key_fingerprint.as_deref() == Some(key.info.fingerprint.as_str()));
    ensure!(
        st.learned_known_hosts
            .as_deref()
            .is_some_and(|k| k.contains("[127.0.0.1]")),
        "host key kept in status"
    );
    let after = secrets.get("my-key").await?;
    ensure!(
        after.metadata.resource_version == created.metadata.resource_version,
        "user's Secret was modified"
    );
    // Rotation cannot apply to a user's key; deleting the config keeps the Secret.
    Api::<GitSyncConfig>::namespaced(c.clone(), &ns)
        .delete("sales", &DeleteParams::default())
        .await?;
    wait(Duration::from_secs(30), || {
        let api = Api::<GitSyncConfig>::namespaced(c.clone(), &ns);
        async move { api.get_opt("sales").await.ok()?.is_none().then_some(()) }
    })
    .await?;
    let still = secrets.get("my-key").await?;
    ensure!(
        still.metadata.resource_version == created.metadata.resource_version,
        "user's Secret changed on delete"
    );
    Ok(())
}

async fn key_rotation(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "gsc-rotate").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    let g = ready_config(&env, &ns, &git, &url, "").await?;
    let first = g
        .status
        .and_then(|s| s.public_key_fingerprint)
        .context("fp")?;
    // Type change: a new RSA-4096 key, not yet accepted.
    apply::<GitSyncConfig>(
        c,
        &ns,
        &manifest("sales", &url, "", "  deployKey:\n    type: rsa-4096\n"),
    )
    .await?;
    let g = wait_gsc(c, &ns, "sales", "new rsa key awaiting", |g| {
        g.status.as_ref().is_some_and(|s| {
            s.public_key
                .as_deref()
                .is_some_and(|k| k.starts_with("ssh-rsa "))
        }) && has(g, "Ready", "False", "AwaitingDeployKey")
    })
    .await?;
    let rsa_public = g
        .status
        .clone()
        .and_then(|s| s.public_key)
        .unwrap_or_default();
    ensure!(g.status.and_then(|s| s.public_key_fingerprint) != Some(first.clone()));
    git.authorize(&rsa_public, Access::ReadWrite)?;
    let g = wait_gsc(c, &ns, "sales", "Ready with rsa", |g| {
        has(g, "Ready", "True", "Ready")
    })
    .await?;
    let second = g
        .status
        .and_then(|s| s.public_key_fingerprint)
        .context("fp")?;
    // Annotation: another new key of the same type.
    let api: Api<GitSyncConfig> = Api::namespaced(c.clone(), &ns);
    let patch = serde_json::json!({"metadata": {"annotations": {"gitsync.tooljet.io/rotate-key": "2026-11-24"}}});
    api.patch(
        "sales",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await?;
    let g = wait_gsc(c, &ns, "sales", "rotated", |g| {
        g.status.as_ref().is_some_and(|s| {
            s.public_key_fingerprint
                .as_deref()
                .is_some_and(|f| f != second)
                && s.last_handled_rotate_key.as_deref() == Some("2026-11-24")
        })
    })
    .await?;
    ensure!(g
        .status
        .and_then(|s| s.public_key)
        .is_some_and(|k| k.starts_with("ssh-rsa ")));
    // Repeated Events of one reason are folded into a series by the recorder.
    wait_events(c, &ns, "sales", &["KeyRotated"]).await?;
    Ok(())
}

async fn read_only_key(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "gsc-readonly").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    apply::<GitSyncConfig>(c, &ns, &manifest("sales", &url, "", "")).await?;
    let g = wait_gsc(c, &ns, "sales", "public key", |g| {
        g.status.as_ref().is_some_and(|s| s.public_key.is_some())
    })
    .await?;
    git.authorize(
        &g.status.and_then(|s| s.public_key).unwrap_or_default(),
        Access::ReadOnly,
    )?;
    poke::<GitSyncConfig>(c, &ns, "sales").await?;
    let g = wait_gsc(c, &ns, "sales", "ReadOnlyAccess", |g| {
        has(g, "Ready", "False", "ReadOnlyAccess")
    })
    .await?;
    ensure!(
        has(&g, "RepositoryReachable", "False", "ReadOnlyAccess"),
        "{}",
        ready_reason(&g)
    );
    Ok(())
}

async fn bad_input_gets_clear_conditions(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "gsc-bad").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    let secrets: Api<Secret> = Api::namespaced(c.clone(), &ns);
    let no_identity: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "empty-key"}, "stringData": {"foo": "bar"}
    }))?;
    secrets.create(&PostParams::default(), &no_identity).await?;
    let garbage: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "garbage-key"}, "stringData": {"identity": "not a key"}
    }))?;
    secrets.create(&PostParams::default(), &garbage).await?;
    let missing_repo = git.url("missing");
    let cases: Vec<(&str, String, &str, &str, &str)> = vec![
        (
            "https",
            "https://github.com/acme/apps.git".into(),
            "",
            "",
            "InvalidSpec",
        ),
        (
            "httpscreds",
            "https://x-access-token:ghs_x@github.com/acme/apps.git".into(),
            "",
            "",
            "InvalidURL",
        ),
        (
            "plainhttp",
            "http://127.0.0.1/r.git".into(),
            "",
            "",
            "UnsupportedURL",
        ),
        ("garbage", "not a url".into(), "", "", "InvalidURL"),
        (
            "azure",
            "git@ssh.dev.azure.com:v3/acme/proj/apps".into(),
            "",
            "",
            "KeyTypeUnsupported",
        ),
        (
            "noidentity",
            url.clone(),
            "",
            "  deployKey:\n    secretName: empty-key\n",
            "SecretInvalid",
        ),
        (
            "garbagekey",
            url.clone(),
            "",
            "  deployKey:\n    secretName: garbage-key\n",
            "SecretInvalid",
        ),
        (
            "unreachable",
            "ssh://git@127.0.0.1:1/x.git".into(),
            "",
            "",
            "RepositoryUnreachable",
        ),
        ("norepo", missing_repo, "", "", "AwaitingDeployKey"),
        (
            "badknownhosts",
            url.clone(),
            "    knownHosts: \"this is not a host key\"\n",
            "",
            "InvalidKnownHosts",
        ),
        ("badbranch", url.clone(), "", "", "InvalidBranch"),
        // The harness runs the operator without --allow-file-urls.
        (
            "fileurl",
            "file:///srv/git/apps.git".into(),
            "",
            "",
            "FileURLNotAllowed",
        ),
        (
            "norepo2",
            git.url("missing"),
            "",
            "  deployKey:\n    secretName: good-key\n",
            "RepositoryNotFound",
        ),
        (
            "nocreds",
            url.clone(),
            "",
            "  deployKey:\n    secretName: good-key\n",
            "CredentialsSecretNotFound",
        ),
        (
            "badtoken",
            url.clone(),
            "",
            "  deployKey:\n    secretName: good-key\n",
            "ToolJetUnauthorized",
        ),
        (
            "noworkspace",
            url.clone(),
            "",
            "  deployKey:\n    secretName: good-key\n",
            "WorkspaceNotFound",
        ),
        (
            "notooljet",
            url.clone(),
            "",
            "  deployKey:\n    secretName: good-key\n",
            "ToolJetUnreachable",
        ),
    ];
    let good_key = keys::generate(tooljet_gitsync_operator::api::KeyType::Ed25519, "good")?;
    git.authorize(&good_key.info.public_openssh, Access::ReadWrite)?;
    let good_secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "good-key"},
        "stringData": {"identity": good_key.private_openssh.as_str()}
    }))?;
    secrets.create(&PostParams::default(), &good_secret).await?;
    support::secret(c, &ns, "wrong-token", &[("token", "not-the-token")]).await?;
    for (name, u, extra_repo, extra_spec, _) in &cases {
        let mut m = manifest(name, u, extra_repo, extra_spec);
        match *name {
            "nocreds" => m = m.replace("name: tooljet-api", "name: missing-secret"),
            "badtoken" => m = m.replace("name: tooljet-api", "name: wrong-token"),
            "noworkspace" => {
                m = m.replace("workspace: my-workspace", "workspace: no-such-workspace")
            }
            "notooljet" => m = m.replace(&support::tooljet_url(), "http://127.0.0.1:9"),
            _ => {}
        }
        if *name == "badbranch" {
            m = m.replace("branch: main", "branch: \"bad..branch\"");
        }
        apply::<GitSyncConfig>(c, &ns, &m)
            .await
            .with_context(|| format!("apply {name}"))?;
    }
    for (name, _, _, _, reason) in &cases {
        let g = wait_gsc(c, &ns, name, reason, |g| has(g, "Ready", "False", reason)).await?;
        let st = g.status.clone().unwrap_or_default();
        let ready = support::condition(&st.conditions, "Ready").context("ready")?;
        ensure!(
            ready.message.len() > 30,
            "{name}: message too thin: {}",
            ready.message
        );
        let stalled = support::condition(&st.conditions, "Stalled").is_some();
        let reconciling = support::condition(&st.conditions, "Reconciling").is_some();
        ensure!(
            stalled != reconciling,
            "{name}: exactly one of Stalled/Reconciling"
        );
    }
    // Secrets stay secret: no token (right or wrong) and no private key in any status or Event.
    let token = env.tooljet.token().unwrap_or_default();
    let notes = event_notes(c, &ns).await?;
    let statuses = serde_json::to_string(
        &Api::<GitSyncConfig>::namespaced(c.clone(), &ns)
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .map(|g| g.status)
            .collect::<Vec<_>>(),
    )?;
    let key_body = good_key
        .private_openssh
        .lines()
        .nth(2)
        .unwrap_or("-")
        .to_string();
    for needle in [token.as_str(), "not-the-token", key_body.as_str(), "ghs_x"] {
        ensure!(!notes.contains(needle), "Event leaks {needle:?}");
        ensure!(!statuses.contains(needle), "status leaks {needle:?}");
    }
    // The operator keeps running: a good config in the same namespace still gets Ready.
    let good = GitServer::start()?;
    let good_url = good.create_repo("apps")?;
    ready_config(&env, &ns, &good, &good_url, "").await?;
    Ok(())
}
