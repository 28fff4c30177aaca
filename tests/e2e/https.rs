//! HTTPS repositories end to end: a GitSyncConfig on the real `git http-backend` behind TLS,
//! with a token Secret (Flux's keys) and with a GitHub App (the GitHub emulator's token
//! endpoint), pushing an app; the token rotated to a read-only one, a wrong one and a missing
//! Secret, each a condition that says what to do; no token in any status or Event.

use std::sync::Arc;

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::api::DeleteParams;
use kube::Api;
use tooljet_gitsync_operator::api::{AppSync, AppSyncSet, GitSyncConfig, PullRequestStatus};
use tooljet_gitsync_testkit::emulator::{Emulator, EmulatorConfig};
use tooljet_gitsync_testkit::forge::gitea::GiteaEmulator;
use tooljet_gitsync_testkit::forge::github::GitHubEmulator;
use tooljet_gitsync_testkit::forge::gitlab::GitLabEmulator;
use tooljet_gitsync_testkit::httpgit::{Access, HttpGitServer};

use crate::support::{
    self, apply, appsync_manifest, aps_has, event_notes, has, namespace, poke, trial, wait_aps,
    wait_events, wait_gsc, Env,
};

const TOKEN: &str = "ghp_e2e_rw_4f1d9c0b7a6e5SECRET";
const RO_TOKEN: &str = "ghp_e2e_ro_8c2b1a0f9e8d7SECRET";
const WRONG: &str = "ghp_e2e_wrong_1a2b3c4dSECRET";

pub fn trials() -> Vec<libtest_mimic::Trial> {
    vec![
        trial(
            "https_token_and_github_app_push_with_clear_refusals",
            token_and_app,
        ),
        trial(
            "pull_request_mode_one_pr_per_branch_merge_close_then_pull",
            pull_request_mode,
        ),
        trial(
            "pull_request_mode_resumes_from_either_crash_window",
            pull_request_resumes,
        ),
        trial(
            "pull_request_mode_set_shares_one_request_per_batch",
            pull_request_set,
        ),
        trial(
            "pull_request_mode_gitlab_and_gitea_with_a_token",
            pull_request_gitlab_gitea,
        ),
    ]
}

pub fn config(name: &str, url: &str, secret: &str) -> String {
    crate::gitsyncconfig::manifest(
        name,
        url,
        &format!("    auth:\n      secretRef: {{ name: {secret} }}\n"),
        "",
    )
}

/// Replaces Secret `name` with exactly `data` (as a user's `kubectl replace` would).
pub async fn set_secret(env: &Env, ns: &str, name: &str, data: &[(&str, &str)]) -> Result<()> {
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

pub fn pr_of(a: &AppSync) -> Option<PullRequestStatus> {
    a.status.as_ref().and_then(|s| s.pull_request.clone())
}

fn last_sha(a: &AppSync) -> Option<String> {
    a.status
        .as_ref()
        .and_then(|s| s.last_commit.as_ref())
        .map(|c| c.sha.clone())
}

/// Edits the app and waits until the AppSync committed it (a new lastCommit) and says so.
async fn edit_and_wait(
    env: &Env,
    ns: &str,
    app_id: &str,
    n: u64,
    before: Option<String>,
    what: &str,
) -> Result<AppSync> {
    env.tooljet
        .edit_app(app_id, |c| {
            c["components"][0]["properties"]["prEdit"] = serde_json::json!({ "value": n });
        })
        .map_err(anyhow::Error::msg)?;
    poke::<AppSync>(&env.client, ns, "web").await?;
    wait_aps(&env.client, ns, "web", what, move |a| {
        aps_has(a, "Ready", "True", "PullRequestOpen")
            && last_sha(a) != before
            && pr_of(a).is_some_and(|p| p.state == "Open")
    })
    .await
}

/// A repository with a base commit on the HTTPS server, a GitHub App installed on it, and a
/// Ready GitSyncConfig `sales` in `ns` using the App (Secret `gh-app`).
pub struct PrWorld {
    pub git: HttpGitServer,
    pub github: GitHubEmulator,
    pub url: String,
    /// The App Secret's keys and values.
    secret: Vec<(&'static str, String)>,
}

impl PrWorld {
    fn secret(&self) -> Vec<(&str, &str)> {
        self.secret.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
}

pub async fn pr_world(env: &Env, ns: &str, repo: &str) -> Result<PrWorld> {
    let git = HttpGitServer::start()?;
    let url = git.create_repo(repo)?;
    // The base exists before the first request (a request needs something to target).
    git.commit_files(repo, "main", &[("README.md", b"apps")], "init")?;
    let github = GitHubEmulator::start(&git)?;
    let installation = github.install("acme", &[repo], Access::ReadWrite);
    let secret = vec![
        ("githubAppID", github.app_id().to_string()),
        ("githubAppInstallationID", installation.to_string()),
        ("githubAppPrivateKey", github.private_key_pem()),
        ("githubEnterpriseApiUrl", github.api_url()),
        ("caFile", git.ca_pem()),
    ];
    let world = PrWorld {
        git,
        github,
        url,
        secret,
    };
    set_secret(env, ns, "gh-app", &world.secret()).await?;
    apply::<GitSyncConfig>(&env.client, ns, &config("sales", &world.url, "gh-app")).await?;
    wait_gsc(&env.client, ns, "sales", "Ready", |g| {
        has(g, "Ready", "True", "Ready")
    })
    .await?;
    Ok(world)
}

async fn pull_request_mode(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "https-pr").await?;
    let w = pr_world(&env, &ns, "acme/promote").await?;
    let (git, github, url) = (&w.git, &w.github, w.url.as_str());

    let app = env
        .tooljet
        .create_app("Promoted App", None)
        .map_err(anyhow::Error::msg)?;
    let pr_spec = "  push:\n    pullRequest:\n      provider: github\n      title: \"Promote {app} {version}\"\n";
    apply::<AppSync>(
        c,
        &ns,
        &appsync_manifest("web", "Promoted App", "Push", pr_spec),
    )
    .await?;
    let a = wait_aps(c, &ns, "web", "PullRequestOpen", |a| {
        aps_has(a, "Ready", "True", "PullRequestOpen")
    })
    .await?;
    let first = pr_of(&a).context("status.pullRequest")?;
    ensure!(
        first.branch == "tooljet-gitsync/https-pr/web"
            && first.base_branch == "main"
            && first.state == "Open",
        "{first:?}"
    );
    let main_files = git.git("acme/promote", &["ls-tree", "-r", "--name-only", "main"])?;
    ensure!(
        !main_files.contains("Promoted App/"),
        "nothing pushed to the base: {main_files}"
    );
    let on_branch = git.git(
        "acme/promote",
        &["show", "tooljet-gitsync/https-pr/web:.meta/meta.json"],
    )?;
    ensure!(on_branch.contains(&app.id), "{on_branch}");
    let prs = github.prs("acme/promote");
    ensure!(prs.len() == 1, "one request: {prs:?}");
    ensure!(
        prs[0].title.starts_with("Promote Promoted App"),
        "{:?}",
        prs[0].title
    );
    wait_events(c, &ns, "web", &["PullRequestOpened"]).await?;

    // A later change adds a commit to the same branch and the same request; never forced.
    let branch_before = git
        .repos()
        .branch_sha("acme/promote", "tooljet-gitsync/https-pr/web")
        .context("branch")?;
    let a = edit_and_wait(
        &env,
        &ns,
        &app.id,
        1,
        last_sha(&a),
        "second commit on the branch",
    )
    .await?;
    let again = pr_of(&a).context("pr")?;
    ensure!(
        again.number == first.number,
        "same request: {again:?} vs {first:?}"
    );
    ensure!(
        github.prs("acme/promote").len() == 1,
        "never a second request"
    );
    let branch_after = git
        .repos()
        .branch_sha("acme/promote", "tooljet-gitsync/https-pr/web")
        .context("branch")?;
    ensure!(branch_after != branch_before, "a new commit on the branch");
    git.git(
        "acme/promote",
        &["merge-base", "--is-ancestor", &branch_before, &branch_after],
    )
    .context("the branch was force-pushed")?;

    // A prod ToolJet pulls main: nothing to import until the request is merged.
    let prod = Emulator::start(EmulatorConfig::default()).await?;
    let prod_ns = namespace(c, "https-pr-prod").await?;
    support::secret(
        c,
        &prod_ns,
        "tooljet-prod",
        &[
            ("email", &prod.email().unwrap_or_default()),
            ("password", &prod.password().unwrap_or_default()),
        ],
    )
    .await?;
    set_secret(&env, &prod_ns, "gh-app", &w.secret()).await?;
    let prod_cfg = config("sales", url, "gh-app")
        .replace(&support::tooljet_url(), &prod.url())
        .replace("name: tooljet-api", "name: tooljet-prod")
        .replace("interval: 1m", "interval: 10s");
    apply::<GitSyncConfig>(c, &prod_ns, &prod_cfg).await?;
    wait_gsc(c, &prod_ns, "sales", "prod Ready", |g| {
        has(g, "Ready", "True", "Ready")
    })
    .await?;
    apply::<AppSync>(
        c,
        &prod_ns,
        &appsync_manifest(
            "web",
            "Promoted App",
            "Pull",
            "  pull:\n    updatePolicy: Auto\n    revision: main\n",
        ),
    )
    .await?;
    wait_aps(c, &prod_ns, "web", "a first pass on main", |a| {
        a.status.as_ref().is_some_and(|s| !s.conditions.is_empty())
    })
    .await?;
    ensure!(prod.apps().is_empty(), "nothing imported before the merge");

    // Merged: status says so, an Event, and the Pull on main imports the app.
    github.merge("acme/promote", first.number)?;
    poke::<AppSync>(c, &ns, "web").await?;
    wait_aps(c, &ns, "web", "request merged", |a| {
        pr_of(a).is_some_and(|p| p.state == "Merged")
    })
    .await?;
    wait_events(c, &ns, "web", &["PullRequestMerged"]).await?;
    poke::<AppSync>(c, &prod_ns, "web").await?;
    wait_aps(c, &prod_ns, "web", "pulled after the merge", |a| {
        aps_has(a, "Ready", "True", "Pulled") || aps_has(a, "Ready", "True", "UpToDate")
    })
    .await?;
    ensure!(
        prod.apps().iter().any(|a| a.name == "Promoted App"),
        "the merged app is in prod"
    );

    // The status that said "merged" lost (a pass killed before its write): the merged branch
    // is passed over all the same.
    Api::<AppSync>::namespaced(c.clone(), &ns)
        .patch_status(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"status": {"pullRequest": null}})),
        )
        .await?;
    // The next change starts a new branch and a new request.
    let a = edit_and_wait(&env, &ns, &app.id, 2, None, "a new request after the merge").await?;
    let second = pr_of(&a).context("pr")?;
    ensure!(
        second.number != first.number && second.branch == "tooljet-gitsync/https-pr/web-2",
        "{second:?}"
    );
    // Closed without merging: the next change goes to yet another branch.
    github.close("acme/promote", second.number)?;
    poke::<AppSync>(c, &ns, "web").await?;
    wait_aps(c, &ns, "web", "request closed", |a| {
        pr_of(a).is_some_and(|p| p.state == "Closed")
    })
    .await?;
    // The rejected content is not offered again.
    poke::<AppSync>(c, &ns, "web").await?;
    wait_aps(c, &ns, "web", "UpToDate after the close", |a| {
        aps_has(a, "Ready", "True", "UpToDate")
    })
    .await?;
    ensure!(
        github.prs("acme/promote").len() == 2,
        "no new request for the content of the closed one"
    );
    wait_events(c, &ns, "web", &["PullRequestClosed"]).await?;
    let a = edit_and_wait(&env, &ns, &app.id, 3, None, "a request after the close").await?;
    let third = pr_of(&a).context("pr")?;
    ensure!(
        third.branch == "tooljet-gitsync/https-pr/web-3",
        "{third:?}"
    );
    let open = github
        .prs("acme/promote")
        .into_iter()
        .filter(|p| format!("{:?}", p.state) == "Open")
        .count();
    ensure!(open == 1, "one open request at a time, {open} open");
    Ok(())
}

/// Both windows a killed pass can leave in pull-request mode, made on purpose: commits on the
/// branch but no request (the API failed after the push), and a request the status does not
/// know (its write lost). Each next pass ends with exactly one request.
async fn pull_request_resumes(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "https-pr-resume").await?;
    let w = pr_world(&env, &ns, "acme/resume").await?;
    let (git, github) = (&w.git, &w.github);
    env.tooljet
        .create_app("Resumed App", None)
        .map_err(anyhow::Error::msg)?;

    // Window 1: the push lands, the request cannot be opened (the API does not answer).
    let dead_api = "  push:\n    pullRequest:\n      provider: github\n      apiUrl: https://127.0.0.1:1/api/v3\n";
    apply::<AppSync>(
        c,
        &ns,
        &appsync_manifest("web", "Resumed App", "Push", dead_api),
    )
    .await?;
    let a = wait_aps(c, &ns, "web", "PullRequestFailed", |a| {
        aps_has(a, "Ready", "False", "PullRequestFailed")
    })
    .await?;
    let msg = a
        .status
        .as_ref()
        .and_then(|s| support::condition(&s.conditions, "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(msg.contains("pull-request"), "{msg}");
    ensure!(
        git.repos()
            .branch_sha("acme/resume", "tooljet-gitsync/https-pr-resume/web")
            .is_some(),
        "the commits are on their branch"
    );
    ensure!(github.prs("acme/resume").is_empty());
    // The API back: the next pass opens the one request for the branch.
    let fixed = "  push:\n    pullRequest:\n      provider: github\n";
    apply::<AppSync>(
        c,
        &ns,
        &appsync_manifest("web", "Resumed App", "Push", fixed),
    )
    .await?;
    let a = wait_aps(c, &ns, "web", "PullRequestOpen", |a| {
        aps_has(a, "Ready", "True", "PullRequestOpen")
    })
    .await?;
    let first = pr_of(&a).context("status.pullRequest")?;
    ensure!(github.prs("acme/resume").len() == 1);

    // Window 2: the request exists but the status lost it.
    let api: Api<AppSync> = Api::namespaced(c.clone(), &ns);
    api.patch_status(
        "web",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"status": {"pullRequest": null}})),
    )
    .await?;
    ensure!(api
        .get("web")
        .await?
        .status
        .and_then(|s| s.pull_request)
        .is_none());
    poke::<AppSync>(c, &ns, "web").await?;
    let a = wait_aps(c, &ns, "web", "the request found again", |a| {
        pr_of(a).is_some()
    })
    .await?;
    let found = pr_of(&a).context("pr")?;
    ensure!(found.number == first.number, "{found:?} vs {first:?}");
    ensure!(
        github.prs("acme/resume").len() == 1,
        "never a second request"
    );
    Ok(())
}

/// An AppSyncSet whose template names one branch: its AppSyncs' commits go out in one push to
/// that branch and wait in one request.
async fn pull_request_set(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "https-pr-set").await?;
    let w = pr_world(&env, &ns, "acme/batch").await?;
    let mut ids = Vec::new();
    for name in ["Shared PR A", "Shared PR B", "Shared PR C"] {
        ids.push(
            env.tooljet
                .create_app(name, None)
                .map_err(anyhow::Error::msg)?
                .id,
        );
    }
    apply::<AppSyncSet>(
        c,
        &ns,
        &crate::sets::set_manifest(
            "batch",
            "Push",
            "  apps: { include: [\"Shared PR *\"] }\n  template:\n    push:\n      pullRequest: { provider: github, branch: promote/batch }\n",
        ),
    )
    .await?;
    crate::sets::wait_set(&env, &ns, "batch", "3 apps Ready", |s| {
        crate::sets::counts(s) == (3, 3, 0)
    })
    .await?;
    let prs = w.github.prs("acme/batch");
    ensure!(prs.len() == 1, "one request for the batch: {prs:?}");
    ensure!(
        prs[0].head == "promote/batch" && prs[0].base == "main",
        "{:?}",
        prs[0]
    );
    let meta = w
        .git
        .git("acme/batch", &["show", "promote/batch:.meta/meta.json"])?;
    for id in &ids {
        ensure!(meta.contains(id.as_str()), "{id} missing from the branch");
    }
    let main = w
        .git
        .git("acme/batch", &["ls-tree", "-r", "--name-only", "main"])?;
    ensure!(!main.contains("Shared PR"), "nothing on the base: {main}");
    Ok(())
}

/// Pull-request mode on GitLab (merge requests) and Gitea with a token Secret: one request
/// opened, its merge seen, the app on the base.
async fn pull_request_gitlab_gitea(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let app = env
        .tooljet
        .create_app("Forge PR App", None)
        .map_err(anyhow::Error::msg)?;
    for provider in ["gitlab", "gitea"] {
        let ns = namespace(c, &format!("https-pr-{provider}")).await?;
        let git = HttpGitServer::start()?;
        let url = git.create_repo("acme/apps")?;
        git.commit_files("acme/apps", "main", &[("README.md", b"apps")], "init")?;
        let token = format!("{provider}-pat-0123456789SECRET");
        git.add_token(&token, Access::ReadWrite);
        let (api, merge): (String, Box<dyn Fn(u64) -> Result<()> + Send + Sync>) =
            if provider == "gitlab" {
                let lab = Arc::new(GitLabEmulator::start(&git)?);
                let l = lab.clone();
                (
                    lab.api_url(),
                    Box::new(move |n| l.merge("acme/apps", n).map(|_| ())),
                )
            } else {
                let tea = Arc::new(GiteaEmulator::start(&git)?);
                let t = tea.clone();
                (
                    tea.api_url(),
                    Box::new(move |n| t.merge("acme/apps", n).map(|_| ())),
                )
            };
        set_secret(
            &env,
            &ns,
            "git-token",
            &[
                ("password", token.as_str()),
                ("caFile", git.ca_pem().as_str()),
            ],
        )
        .await?;
        apply::<GitSyncConfig>(c, &ns, &config("sales", &url, "git-token")).await?;
        wait_gsc(c, &ns, "sales", "Ready", |g| {
            has(g, "Ready", "True", "Ready")
        })
        .await?;
        let spec =
            format!("  push:\n    pullRequest:\n      provider: {provider}\n      apiUrl: {api}\n");
        apply::<AppSync>(
            c,
            &ns,
            &appsync_manifest("web", "Forge PR App", "Push", &spec),
        )
        .await?;
        let a = wait_aps(c, &ns, "web", "PullRequestOpen", |a| {
            aps_has(a, "Ready", "True", "PullRequestOpen")
        })
        .await?;
        let pr = pr_of(&a).context("status.pullRequest")?;
        ensure!(pr.url.starts_with("https://"), "{provider}: {pr:?}");
        merge(pr.number)?;
        poke::<AppSync>(c, &ns, "web").await?;
        wait_aps(c, &ns, "web", "merged", |a| {
            pr_of(a).is_some_and(|p| p.state == "Merged")
        })
        .await?;
        let meta = git.git("acme/apps", &["show", "main:.meta/meta.json"])?;
        ensure!(
            meta.contains(&app.id),
            "{provider}: the merge brought the app to main"
        );
    }
    Ok(())
}
