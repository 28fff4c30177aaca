//! The repository worker over HTTPS against the real `git http-backend` behind TLS with basic
//! auth (testkit): connection checks, fetches and pushes with a token, a read-only token, a
//! wrong one, an untrusted CA, a GitHub App installation token from the GitHub emulator, and
//! that the token reaches no command line, no URL and no file on disk.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use tooljet_gitsync_operator::forge::github_app::{AppCredentials, AppTokens, GIT_USERNAME};
use tooljet_gitsync_operator::git::check::Stage;
use tooljet_gitsync_operator::git::worker::{PushJob, PushResult, Workers};
use tooljet_gitsync_operator::git::{GitCli, GitFailureKind, HttpsAuth, RepoUrl, Transport};
use tooljet_gitsync_operator::layout::AppFile;
use tooljet_gitsync_testkit::forge::github::GitHubEmulator;
use tooljet_gitsync_testkit::httpgit::{Access, HttpGitServer};
use zeroize::Zeroizing;

const TOKEN: &str = "ghp_rw_0123456789abcdefSECRET";
const RO_TOKEN: &str = "ghp_ro_0123456789abcdefSECRET";
const CANARY: &str = "canary-7f3e9a1c";

fn auth(url: &RepoUrl, token: &str, ca: Option<String>) -> Transport {
    Transport::https(HttpsAuth {
        username: "bot".into(),
        password: Zeroizing::new(token.into()),
        ca_pem: ca,
        identity: format!("token:test/{}", &token[..6]),
        origin: url.https_origin().unwrap_or_default(),
    })
}

fn workers_in(data: &Path) -> Workers {
    Workers::new(
        GitCli::new(data.join("scratch"), Duration::from_secs(30)),
        data.join("mirrors"),
    )
}

fn export(name: &str, text: &str) -> Value {
    json!({
        "app": [{"definition": {"appV2": {
            "id": "39f9a222-5cf9-486d-9e9d-7ee9964752b1",
            "name": name,
            "type": "front-end",
            "editingVersion": {"id": "v1-id", "name": "v1"},
            "components": [{"id": "c1", "name": "button1", "properties": {"text": {"value": text}}}],
            "appVersions": [{"id": "v1-id", "name": "v1"}]
        }}}],
        "tooljet_version": "3.16.0-ee-lts"
    })
}

fn job(transport: Transport, app_id: &str, name: &str, text: &str) -> PushJob {
    PushJob {
        start_from: None,
        transport,
        branch: "main".into(),
        app_id: app_id.into(),
        app_name: name.into(),
        version_id: "v1-id".into(),
        version_name: "v1".into(),
        file: AppFile::of(&export(name, text)).expect("file"),
        message: format!("Version v1 Of {name}: App creation"),
        author_name: "Jane Doe".into(),
        author_email: "jane@example.com".into(),
        date: "2024-03-01T10:22:33.123Z".parse().expect("date"),
        signing: None,
    }
}

/// Scans every process's command line for `needles` until stopped; returns what it saw.
fn watch_cmdlines(
    needles: Vec<String>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(dir) = std::fs::read_dir("/proc") {
                for e in dir.flatten() {
                    let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
                        continue;
                    };
                    let line = String::from_utf8_lossy(&raw).replace('\0', " ");
                    for n in &needles {
                        if line.contains(n.as_str()) {
                            seen.push(line.clone());
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        seen
    })
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    out.push(p.display().to_string());
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_check_push_fetch_and_refusals_over_https() -> Result<()> {
    let server = HttpGitServer::start()?;
    let url = RepoUrl::parse(&server.create_repo("acme/apps")?)?;
    ensure!(url.is_https(), "{url}");
    server.add_token(TOKEN, Access::ReadWrite);
    server.add_token(RO_TOKEN, Access::ReadOnly);
    let ca = Some(server.ca_pem());
    let data = tempfile::tempdir()?;
    let workers = workers_in(data.path());
    let worker = workers.get(&url);

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_cmdlines(
        vec![TOKEN.into(), RO_TOKEN.into(), CANARY.into()],
        stop.clone(),
    );
    // The watcher's positive control: a process with the canary in its arguments is seen.
    std::process::Command::new("sh")
        .args(["-c", "sleep 0.3", CANARY])
        .status()?;

    // The connection check: read and (dry-run) write, on the empty repository.
    let rw = auth(&url, TOKEN, ca.clone());
    let outcome = worker.check(rw.clone(), "main").await?;
    let head = outcome
        .result
        .map_err(|(s, f)| anyhow::anyhow!("{s:?}: {f}"))?
        .head;
    ensure!(head.is_none(), "empty repository: {head:?}");

    // A first push creates the branch; a second app is one more commit, never forced.
    let r = worker
        .push(job(rw.clone(), "app-1", "Sales", "one"))
        .await?;
    ensure!(matches!(r, PushResult::Committed { .. }), "{r:?}");
    let first = server
        .repos()
        .branch_sha("acme/apps", "main")
        .context("branch made")?;
    // A foreign commit on the server: the next push fetches it over HTTPS and builds on it.
    let foreign = server.commit_files("acme/apps", "main", &[("README.md", b"hi")], "foreign")?;
    let r = worker.push(job(rw.clone(), "app-2", "Ops", "two")).await?;
    ensure!(matches!(r, PushResult::Committed { .. }), "{r:?}");
    let head = server
        .repos()
        .branch_sha("acme/apps", "main")
        .context("head")?;
    for ancestor in [&first, &foreign] {
        server
            .git(
                "acme/apps",
                &["merge-base", "--is-ancestor", ancestor, &head],
            )
            .with_context(|| format!("{ancestor} lost"))?;
    }
    let files = server.git("acme/apps", &["ls-tree", "-r", "--name-only", "main"])?;
    let files: BTreeSet<&str> = files.lines().collect();
    for f in [
        ".meta/meta.json",
        "Sales/v1.json",
        "Ops/v1.json",
        "README.md",
    ] {
        ensure!(files.contains(f), "{f} missing: {files:?}");
    }
    // Reads come from the mirror, fetched over HTTPS.
    let snap = worker
        .snapshot(rw.clone(), "main", vec!["Sales".into()], Duration::ZERO)
        .await?;
    let read = snap.commit.as_ref().map(|c| c.sha.as_str());
    ensure!(read == Some(head.as_str()), "{read:?}");
    ensure!(
        snap.files.contains_key("Sales/v1.json"),
        "{:?}",
        snap.files.keys()
    );
    let requests = server.requests();
    ensure!(requests.iter().any(|r| r.is_fetch()) && requests.iter().any(|r| r.is_push()));
    ensure!(
        requests
            .iter()
            .all(|r| r.status != 200 || r.username.as_deref() == Some("bot")),
        "every request that got in authenticated as bot"
    );
    ensure!(
        requests
            .iter()
            .any(|r| r.git_protocol.as_deref() == Some("version=2")),
        "protocol v2"
    );

    // Fetches follow the remote: new branches and tags come, deleted ones go (--prune).
    server.create_branch("acme/apps", "feature", "main")?;
    server.git("acme/apps", &["tag", "v1", "main"])?;
    let refs = worker.refresh(rw.clone()).await?;
    ensure!(
        refs.contains_key("refs/heads/feature") && refs.contains_key("refs/tags/v1"),
        "{refs:?}"
    );
    server.git("acme/apps", &["branch", "-D", "feature"])?;
    server.git("acme/apps", &["tag", "-d", "v1"])?;
    tokio::time::sleep(tooljet_gitsync_operator::git::worker::REFRESH_SPACING).await;
    let refs = worker.refresh(rw.clone()).await?;
    ensure!(
        !refs.contains_key("refs/heads/feature") && !refs.contains_key("refs/tags/v1"),
        "pruned: {refs:?}"
    );
    ensure!(refs.get("refs/heads/main") == Some(&head), "{refs:?}");

    // A corrupt mirror (objects gone, refs left) is rebuilt over HTTPS: reads work again.
    let foreign2 = server.commit_files("acme/apps", "main", &[("NOTES.md", b"x")], "foreign 2")?;
    let mirrors = data.path().join("mirrors");
    let mut objects = Vec::new();
    let mut stack = vec![mirrors.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.components().any(|c| c.as_os_str() == "objects")
                && !p.components().any(|c| c.as_os_str() == "info")
            {
                objects.push(p);
            }
        }
    }
    ensure!(!objects.is_empty(), "the mirror holds objects");
    for f in objects {
        std::fs::remove_file(f)?;
    }
    let mut read = None;
    for _ in 0..2 {
        match worker
            .snapshot(rw.clone(), "main", vec![], Duration::ZERO)
            .await
        {
            Ok(snap) => {
                read = snap.commit.map(|c| c.sha);
                break;
            }
            Err(e) => ensure!(e.reason() == "InternalError", "{e:?}"),
        }
    }
    ensure!(read.as_deref() == Some(foreign2.as_str()), "{read:?}");

    // A read-only token passes the read and fails the write, classified.
    let ro = auth(&url, RO_TOKEN, ca.clone());
    let outcome = worker.check(ro.clone(), "main").await?;
    match outcome.result {
        Err((Stage::Write, f)) => ensure!(f.kind == GitFailureKind::ReadOnlyAccess, "{f}"),
        other => anyhow::bail!("read-only token: {other:?}"),
    }
    let e = worker
        .push(job(ro.clone(), "app-3", "Hr", "three"))
        .await
        .err()
        .context("a read-only push must fail")?;
    ensure!(e.git_kind() == Some(GitFailureKind::ReadOnlyAccess), "{e}");

    // A wrong token: authentication failed, at the read.
    let wrong = auth(&url, "ghp_wrong_SECRET", ca.clone());
    match worker.check(wrong, "main").await?.result {
        Err((Stage::Read, f)) => ensure!(f.kind == GitFailureKind::AuthenticationFailed, "{f}"),
        other => anyhow::bail!("wrong token: {other:?}"),
    }
    // The credential is offered to the repository's origin only: scoped elsewhere (as a
    // proxy or a redirect target would be), git has nothing to send.
    let mut elsewhere = auth(&url, TOKEN, ca.clone());
    if let Some(h) = elsewhere.https.as_mut() {
        h.origin = "https://proxy.invalid:3128".into();
    }
    match worker.check(elsewhere, "main").await?.result {
        Err((Stage::Read, f)) => ensure!(f.kind == GitFailureKind::AuthenticationFailed, "{f}"),
        other => anyhow::bail!("a credential scoped elsewhere was sent: {other:?}"),
    }
    // The server's CA not trusted (system roots only): nothing is sent.
    let before = server.requests().len();
    let untrusted = auth(&url, TOKEN, None);
    match worker.check(untrusted, "main").await?.result {
        Err((Stage::Read, f)) => ensure!(f.kind == GitFailureKind::CertificateUntrusted, "{f}"),
        other => anyhow::bail!("untrusted CA: {other:?}"),
    }
    ensure!(
        server.requests().len() == before,
        "no request passed the TLS handshake"
    );
    // Nothing listens: unreachable.
    let closed = RepoUrl::parse("https://127.0.0.1:1/acme/apps.git")?;
    match workers
        .get(&closed)
        .check(auth(&url, TOKEN, ca.clone()), "main")
        .await?
        .result
    {
        Err((_, f)) => ensure!(f.kind == GitFailureKind::Unreachable, "{f}"),
        Ok(a) => anyhow::bail!("closed port answered {a:?}"),
    }

    stop.store(true, Ordering::Relaxed);
    let seen = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("watcher panicked"))?;
    let (canary, leaks): (Vec<_>, Vec<_>) = seen.iter().partition(|l| l.contains(CANARY));
    ensure!(!canary.is_empty(), "the watcher saw no command line at all");
    ensure!(leaks.is_empty(), "a token was on a command line: {leaks:?}");
    // No token in the mirror (its config included) or in any scratch file.
    for token in [TOKEN, RO_TOKEN] {
        let found = files_containing(data.path(), token);
        ensure!(found.is_empty(), "token on disk in {found:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_app_installation_token_pushes_and_is_cached() -> Result<()> {
    let server = HttpGitServer::start()?;
    let url = RepoUrl::parse(&server.create_repo("acme/apps")?)?;
    server.create_repo("acme/other")?;
    let github = GitHubEmulator::start(&server)?;
    let installation = github.install("acme", &["acme/apps"], Access::ReadWrite);
    let creds = AppCredentials {
        api_base: github.api_url(),
        app_id: github.app_id().to_string(),
        installation_id: installation.to_string(),
        private_key_pem: Zeroizing::new(github.private_key_pem()),
        ca_pem: Some(server.ca_pem()),
    };
    let tokens = AppTokens::new(Duration::from_secs(10));
    let token = tokens.token(&creds, Some(&url.repo_path())).await?;
    let again = tokens.token(&creds, Some(&url.repo_path())).await?;
    ensure!(
        token.token == again.token,
        "cached until shortly before it expires"
    );
    let transport = Transport::https(HttpsAuth {
        username: GIT_USERNAME.into(),
        password: token.token.clone(),
        ca_pem: Some(server.ca_pem()),
        identity: "app:test/app".into(),
        origin: url.https_origin().context("origin")?,
    });
    let data = tempfile::tempdir()?;
    let workers = workers_in(data.path());
    let worker = workers.get(&url);
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_cmdlines(vec![token.token.to_string()], stop.clone());
    let r = worker
        .push(job(transport.clone(), "app-1", "Sales", "one"))
        .await?;
    ensure!(matches!(r, PushResult::Committed { .. }), "{r:?}");
    ensure!(server.repos().branch_sha("acme/apps", "main").is_some());
    // The App's token does not reach a repository outside its installation.
    let other = RepoUrl::parse(&server.url("acme/other"))?;
    match workers
        .get(&other)
        .check(transport.clone(), "main")
        .await?
        .result
    {
        Err((Stage::Read, f)) => ensure!(
            matches!(
                f.kind,
                GitFailureKind::RepositoryNotFound | GitFailureKind::AuthenticationFailed
            ),
            "{f}"
        ),
        Ok(a) => anyhow::bail!("another repository answered {a:?}"),
        Err(other) => anyhow::bail!("{other:?}"),
    }
    // An App not installed on the repository gets a token error that says so.
    let e = tokens
        .token(&creds, Some("acme/other"))
        .await
        .err()
        .context("not installed on acme/other")?;
    ensure!(e.to_string().contains("acme/other"), "{e}");
    stop.store(true, Ordering::Relaxed);
    let seen = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("watcher panicked"))?;
    ensure!(
        seen.is_empty(),
        "the App token was on a command line: {seen:?}"
    );
    ensure!(files_containing(data.path(), &token.token).is_empty());
    Ok(())
}
