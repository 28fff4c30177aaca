//! HTTPS repositories end to end: a GitSyncConfig on the real `git http-backend` behind TLS,
//! with a token Secret (Flux's keys) and with a GitHub App (the GitHub emulator's token
//! endpoint), pushing an app; the token rotated to a read-only one, a wrong one and a missing
//! Secret, each a condition that says what to do; no token in any status or Event.

use std::sync::Arc;

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::api::DeleteParams;
use kube::Api;
use tooljet_gitsync_operator::api::{AppSync, GitSyncConfig};
use tooljet_gitsync_testkit::forge::github::GitHubEmulator;
use tooljet_gitsync_testkit::httpgit::{Access, HttpGitServer};

use crate::support::{
    self, apply, appsync_manifest, aps_has, event_notes, has, namespace, trial, wait_aps, wait_gsc,
    Env,
};

const TOKEN: &str = "ghp_e2e_rw_4f1d9c0b7a6e5SECRET";
const RO_TOKEN: &str = "ghp_e2e_ro_8c2b1a0f9e8d7SECRET";
const WRONG: &str = "ghp_e2e_wrong_1a2b3c4dSECRET";

pub fn trials() -> Vec<libtest_mimic::Trial> {
    vec![trial(
        "https_token_and_github_app_push_with_clear_refusals",
        token_and_app,
    )]
}

fn config(name: &str, url: &str, secret: &str) -> String {
    format!(
        r#"apiVersion: gitsync.tooljet.io/v1alpha1
kind: GitSyncConfig
metadata:
  name: {name}
spec:
  repository:
    url: "{url}"
    branch: main
    auth:
      secretRef: {{ name: {secret} }}
  tooljet:
    url: {tooljet}
    workspace: my-workspace
    credentialsSecretRef: {{ name: tooljet-api }}
  interval: 1m
"#,
        tooljet = support::tooljet_url()
    )
}

/// Replaces Secret `name` with exactly `data` (as a user's `kubectl replace` would).
async fn set_secret(env: &Env, ns: &str, name: &str, data: &[(&str, &str)]) -> Result<()> {
    let api = Api::<Secret>::namespaced(env.client.clone(), ns);
    if api.get_opt(name).await?.is_some() {
        api.delete(name, &DeleteParams::default()).await?;
    }
    support::secret(&env.client, ns, name, data).await
}

fn ready_message(g: &GitSyncConfig) -> String {
    g.status
        .as_ref()
        .and_then(|s| support::condition(&s.conditions, "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

async fn token_and_app(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "https-auth").await?;
    let git = HttpGitServer::start()?;
    let url = git.create_repo("acme/apps")?;
    git.add_token(TOKEN, Access::ReadWrite);
    git.add_token(RO_TOKEN, Access::ReadOnly);
    let ca = git.ca_pem();

    // A token Secret with Flux's keys; the private CA under caFile.
    set_secret(
        &env,
        &ns,
        "git-token",
        &[("username", "bot"), ("password", TOKEN), ("caFile", &ca)],
    )
    .await?;
    apply::<GitSyncConfig>(c, &ns, &config("sales", &url, "git-token")).await?;
    let g = wait_gsc(c, &ns, "sales", "Ready over HTTPS", |g| {
        has(g, "Ready", "True", "Ready")
    })
    .await?;
    let st = g.status.clone().context("status")?;
    ensure!(st.public_key.is_none(), "no deploy key for HTTPS");
    ensure!(support::condition(&st.conditions, "DeployKeyReady").is_none());
    let cr = support::condition(&st.conditions, "CredentialsReady").context("CredentialsReady")?;
    ensure!(
        cr.status == "True" && cr.message.contains("git-token"),
        "{cr:?}"
    );
    ensure!(
        Api::<Secret>::namespaced(c.clone(), &ns)
            .get_opt("sales-deploy-key")
            .await?
            .is_none(),
        "no deploy key Secret is generated"
    );

    // An app pushed over HTTPS.
    let app = env
        .tooljet
        .create_app("Https App", None)
        .map_err(anyhow::Error::msg)?;
    apply::<AppSync>(c, &ns, &appsync_manifest("web", "Https App", "Push", "")).await?;
    wait_aps(c, &ns, "web", "Committed", |a| {
        aps_has(a, "Ready", "True", "Committed")
    })
    .await?;
    let meta = git.git("acme/apps", &["show", "main:.meta/meta.json"])?;
    ensure!(meta.contains(&app.id), "{meta}");
    let pushes: Vec<_> = git.requests().into_iter().filter(|r| r.is_push()).collect();
    ensure!(
        pushes
            .iter()
            .any(|r| r.status == 200 && r.username.as_deref() == Some("bot")),
        "pushed as bot over smart HTTP: {pushes:?}"
    );

    // The token rotated to a read-only one: the Secret is watched, the write check re-runs.
    set_secret(
        &env,
        &ns,
        "git-token",
        &[("username", "bot"), ("password", RO_TOKEN), ("caFile", &ca)],
    )
    .await?;
    let g = wait_gsc(c, &ns, "sales", "ReadOnlyAccess", |g| {
        has(g, "Ready", "False", "ReadOnlyAccess")
    })
    .await?;
    let m = ready_message(&g);
    ensure!(
        m.contains("write") && !m.contains("deploy key"),
        "says to give the token write access: {m}"
    );
    // A wrong token: authentication failed, naming the Secret.
    set_secret(
        &env,
        &ns,
        "git-token",
        &[("username", "bot"), ("password", WRONG), ("caFile", &ca)],
    )
    .await?;
    let g = wait_gsc(c, &ns, "sales", "AuthenticationFailed", |g| {
        has(g, "Ready", "False", "AuthenticationFailed")
    })
    .await?;
    ensure!(
        ready_message(&g).contains("git-token"),
        "{}",
        ready_message(&g)
    );
    // No CA: the certificate is not trusted, nothing sent.
    set_secret(&env, &ns, "git-token", &[("password", TOKEN)]).await?;
    wait_gsc(c, &ns, "sales", "CertificateUntrusted", |g| {
        has(g, "Ready", "False", "CertificateUntrusted")
    })
    .await?;
    // The Secret gone: what to create.
    Api::<Secret>::namespaced(c.clone(), &ns)
        .delete("git-token", &DeleteParams::default())
        .await?;
    let g = wait_gsc(c, &ns, "sales", "RepositoryCredentialsNotFound", |g| {
        has(g, "Ready", "False", "RepositoryCredentialsNotFound")
    })
    .await?;
    ensure!(
        ready_message(&g).contains("password"),
        "{}",
        ready_message(&g)
    );
    // Back: Ready again.
    set_secret(
        &env,
        &ns,
        "git-token",
        &[("password", TOKEN), ("caFile", &ca)],
    )
    .await?;
    wait_gsc(c, &ns, "sales", "Ready again", |g| {
        has(g, "Ready", "True", "Ready")
    })
    .await?;

    // A GitHub App: the operator signs the JWT and exchanges it for an installation token.
    let apps_repo = git.create_repo("acme/app-repo")?;
    git.create_repo("acme/elsewhere")?;
    let github = GitHubEmulator::start(&git)?;
    let installation = github.install("acme", &["acme/app-repo"], Access::ReadWrite);
    let key = github.private_key_pem();
    let app_id = github.app_id().to_string();
    let inst = installation.to_string();
    let api = github.api_url();
    let app_secret = [
        ("githubAppID", app_id.as_str()),
        ("githubAppInstallationID", inst.as_str()),
        ("githubAppPrivateKey", key.as_str()),
        ("githubEnterpriseApiUrl", api.as_str()),
        ("caFile", ca.as_str()),
    ];
    set_secret(&env, &ns, "gh-app", &app_secret).await?;
    apply::<GitSyncConfig>(c, &ns, &config("app-cfg", &apps_repo, "gh-app")).await?;
    let g = wait_gsc(c, &ns, "app-cfg", "Ready with the App", |g| {
        has(g, "Ready", "True", "Ready")
    })
    .await?;
    let cr = g
        .status
        .as_ref()
        .and_then(|s| support::condition(&s.conditions, "CredentialsReady"))
        .context("CredentialsReady")?;
    ensure!(cr.message.contains(&app_id), "{cr:?}");
    let manifest = appsync_manifest("via-app", "Https App", "Push", "")
        .replace("name: sales", "name: app-cfg");
    apply::<AppSync>(c, &ns, &manifest).await?;
    wait_aps(c, &ns, "via-app", "Committed with the App", |a| {
        aps_has(a, "Ready", "True", "Committed")
    })
    .await?;
    ensure!(git.repos().branch_sha("acme/app-repo", "main").is_some());
    let app_pushes = git
        .requests()
        .into_iter()
        .filter(|r| r.is_push() && r.path.starts_with("/acme/app-repo"))
        .collect::<Vec<_>>();
    ensure!(
        app_pushes
            .iter()
            .any(|r| r.status == 200 && r.username.as_deref() == Some("x-access-token")),
        "pushed with the installation token: {app_pushes:?}"
    );
    // The App is not installed on another repository: the condition says to install it.
    let elsewhere = git.url("acme/elsewhere");
    apply::<GitSyncConfig>(c, &ns, &config("not-installed", &elsewhere, "gh-app")).await?;
    let g = wait_gsc(c, &ns, "not-installed", "GitHubAppNotInstalled", |g| {
        has(g, "Ready", "False", "GitHubAppNotInstalled")
    })
    .await?;
    ensure!(
        ready_message(&g).contains("install"),
        "{}",
        ready_message(&g)
    );
    // An App key that is not the App's: GitHub refuses the JWT.
    let stranger = GitHubEmulator::start(&git)?.private_key_pem();
    let mut wrong_key = app_secret;
    wrong_key[2] = ("githubAppPrivateKey", stranger.as_str());
    set_secret(&env, &ns, "gh-app-wrong", &wrong_key).await?;
    apply::<GitSyncConfig>(c, &ns, &config("wrong-key", &apps_repo, "gh-app-wrong")).await?;
    wait_gsc(c, &ns, "wrong-key", "GitHubAppRejected", |g| {
        has(g, "Ready", "False", "GitHubAppRejected")
    })
    .await?;

    // Secrets stay secret: no token, App key or installation token in any status or Event.
    let statuses = serde_json::to_string(
        &Api::<GitSyncConfig>::namespaced(c.clone(), &ns)
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .map(|g| g.status)
            .collect::<Vec<_>>(),
    )?;
    let aps = serde_json::to_string(
        &Api::<AppSync>::namespaced(c.clone(), &ns)
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .map(|a| a.status)
            .collect::<Vec<_>>(),
    )?;
    let notes = event_notes(c, &ns).await?;
    let key_line = key.lines().nth(2).unwrap_or("-").to_string();
    let logs = support::logs();
    for needle in [TOKEN, RO_TOKEN, WRONG, key_line.as_str(), "ghs_"] {
        ensure!(!statuses.contains(needle), "status leaks {needle:?}");
        ensure!(!aps.contains(needle), "AppSync status leaks {needle:?}");
        ensure!(!notes.contains(needle), "Event leaks {needle:?}");
        ensure!(!logs.contains(needle), "log leaks {needle:?}");
    }
    Ok(())
}
