//! The repository worker against a real sshd + git-shell on loopback: ToolJet's layout on
//! push (creation, update, rename, version change, no change), batching, non-fast-forward
//! retries without force, mirror rebuilds, snapshots, shared remote-head checks, connection
//! checks and update detection. Every test starts its own server and data directory.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use tooljet_gitsync_operator::api::KeyType;
use tooljet_gitsync_operator::git::check::Stage;
use tooljet_gitsync_operator::git::worker::{
    PushJob, PushResult, WorkerError, WorkerHandle, Workers,
};
use tooljet_gitsync_operator::git::{
    CommitSigner, GitCli, GitFailureKind, HostKeyPolicy, RepoUrl, Transport,
};
use tooljet_gitsync_operator::keys;
use tooljet_gitsync_operator::layout::{AppFile, PushKind};
use tooljet_gitsync_testkit::gitserver::{Access, GitServer};

const REPO: &str = "apps";
const LONG: Duration = Duration::from_secs(3600);

struct Env {
    server: GitServer,
    url: RepoUrl,
    transport: Transport,
    workers: Workers,
    worker: WorkerHandle,
    data: tempfile::TempDir,
}

fn setup() -> Result<Env> {
    let server = GitServer::start()?;
    let url = RepoUrl::parse(&server.create_repo(REPO)?)?;
    let key = keys::generate(KeyType::Ed25519, "worker-test")?;
    server.authorize(&key.info.public_openssh, Access::ReadWrite)?;
    let transport = Transport {
        private_key: Some(key.private_openssh),
        host_keys: HostKeyPolicy::Pinned(server.known_hosts_line()?),
        https: None,
    };
    let data = tempfile::tempdir()?;
    let workers = workers_in(data.path());
    let worker = workers.get(&url);
    Ok(Env {
        server,
        url,
        transport,
        workers,
        worker,
        data,
    })
}

fn workers_in(data: &Path) -> Workers {
    Workers::new(
        GitCli::new(data.join("scratch"), Duration::from_secs(60)),
        data.join("mirrors"),
    )
}

/// An export shaped like ToolJet's (reference §2), with `text` as the app's content.
fn export(name: &str, version: &str, text: &str) -> Value {
    json!({
        "app": [{"definition": {"appV2": {
            "id": "39f9a222-5cf9-486d-9e9d-7ee9964752b1",
            "name": name,
            "type": "front-end",
            "updatedAt": "2024-03-01T10:22:33.123Z",
            "editingVersion": {"id": "d486cb0f-64bf-41c0-b445-c8308e87c1bf", "name": version},
            "components": [{"id": "6fdbe287-cffd-4d6d-a846-db5a003b6835", "name": "button1",
                            "properties": {"text": {"value": text}}}],
            "appVersions": [{"id": "d486cb0f-64bf-41c0-b445-c8308e87c1bf", "name": version}]
        }}}],
        "tooljet_version": "3.16.0-ee-lts"
    })
}

/// A push of `name` (version `version`, content `text`) with `transport`.
fn job_with(
    transport: Transport,
    app_id: &str,
    name: &str,
    version: &str,
    text: &str,
    message: &str,
) -> PushJob {
    PushJob {
        start_from: None,
        transport,
        branch: "main".into(),
        app_id: app_id.into(),
        app_name: name.into(),
        version_id: format!("{version}-id"),
        version_name: version.into(),
        file: AppFile::of(&export(name, version, text)).unwrap(),
        message: message.into(),
        author_name: "Jane Doe".into(),
        author_email: "jane@example.com".into(),
        date: "2024-03-01T10:22:33.123Z".parse().unwrap(),
        signing: None,
    }
}

impl Env {
    fn job(&self, app_id: &str, name: &str, version: &str, text: &str, message: &str) -> PushJob {
        job_with(self.transport.clone(), app_id, name, version, text, message)
    }

    async fn push(&self, job: PushJob) -> Result<PushResult> {
        Ok(self.worker.push(job).await?)
    }

    fn git(&self, args: &[&str]) -> Result<String> {
        self.server.git(REPO, args)
    }

    fn files(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .git(&["ls-tree", "-r", "--name-only", "main"])?
            .lines()
            .map(str::to_owned)
            .collect())
    }

    fn head(&self) -> Result<String> {
        Ok(self.git(&["rev-parse", "main"])?.trim().to_owned())
    }

    fn meta(&self) -> Result<Value> {
        Ok(serde_json::from_str(
            &self.git(&["show", "main:.meta/meta.json"])?,
        )?)
    }

    fn is_ancestor(&self, ancestor: &str, of: &str) -> bool {
        self.git(&["merge-base", "--is-ancestor", ancestor, of])
            .is_ok()
    }

    /// Lets root write into the git-owned repository without leaving root-owned object
    /// directories behind (which the git user could not write into).
    fn precreate_object_dirs(&self) -> Result<()> {
        let objects = self.server.repo_path(REPO).join("objects");
        for i in 0..=255u8 {
            std::fs::create_dir_all(objects.join(format!("{i:02x}")))?;
        }
        let st = Command::new("chown")
            .args(["-R", "git:git"])
            .arg(&objects)
            .status()?;
        ensure!(st.success());
        Ok(())
    }
}

fn committed(r: &PushResult) -> Result<(&str, &str, &PushKind)> {
    match r {
        PushResult::Committed {
            commit,
            app_path,
            kind,
        } => Ok((&commit.sha, app_path, kind)),
        other => anyhow::bail!("expected a commit, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn first_push_creates_meta_and_app_file() -> Result<()> {
    let env = setup()?;
    let r = env
        .push(env.job("app-1", "Sales Dashboard", "v1", "hello", "ignored"))
        .await?;
    let (sha, path, kind) = committed(&r)?;
    ensure!(*kind == PushKind::Creation && path == "Sales Dashboard/v1.json");
    ensure!(env.head()? == sha);
    ensure!(
        env.files()?
            == BTreeSet::from([
                ".meta/meta.json".to_string(),
                "Sales Dashboard/v1.json".to_string()
            ])
    );
    // Root commit of an empty repository: the bare message, the job's author.
    ensure!(
        env.git(&["log", "--format=%s|%an|%ae|%P", "main"])?.trim()
            == "App creation|Jane Doe|jane@example.com|"
    );
    let meta = env.meta()?;
    ensure!(meta["app-1"]["gitAppName"] == "Sales Dashboard");
    ensure!(meta["app-1"]["gitVersionName"] == "v1");
    ensure!(meta["app-1"]["lastCommitMessage"] == "App creation");
    ensure!(meta["app-1"]["lastCommitUser"] == "Jane Doe");
    let file: Value = serde_json::from_str(&env.git(&["show", "main:Sales Dashboard/v1.json"])?)?;
    ensure!(file == export("Sales Dashboard", "v1", "hello"));
    if let PushResult::Committed { commit, .. } = &r {
        ensure!(commit.message == "App creation" && commit.author == "Jane Doe");
        ensure!(commit.date == "2024-03-01T10:22:33Z", "{}", commit.date);
    }
    let s = env.worker.stats();
    ensure!(s.pushes == 1 && s.commits == 1 && s.fetches == 1, "{s:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn update_commits_with_the_users_message() -> Result<()> {
    let env = setup()?;
    let first = env.push(env.job("app-1", "Sales", "v1", "one", "")).await?;
    let (first_sha, ..) = committed(&first)?;
    let r = env
        .push(env.job("app-1", "Sales", "v1", "two", "add filter to table"))
        .await?;
    let (sha, path, kind) = committed(&r)?;
    ensure!(*kind == PushKind::Update && path == "Sales/v1.json");
    ensure!(
        env.git(&["log", "-1", "--format=%s|%P", "main"])?.trim()
            == format!("Version v1 Of Sales: add filter to table|{first_sha}")
    );
    ensure!(env.head()? == sha);
    ensure!(env.meta()?["app-1"]["lastCommitMessage"] == "add filter to table");
    let file: Value = serde_json::from_str(&env.git(&["show", "main:Sales/v1.json"])?)?;
    ensure!(file == export("Sales", "v1", "two"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_moves_the_folder() -> Result<()> {
    let env = setup()?;
    env.push(env.job("app-1", "Sales", "v1", "one", "")).await?;
    env.push(env.job("app-2", "Other", "v1", "x", "")).await?;
    let r = env
        .push(env.job("app-1", "Revenue", "v1", "one", ""))
        .await?;
    let (_, path, kind) = committed(&r)?;
    ensure!(*kind == PushKind::Rename && path == "Revenue/v1.json");
    let files = env.files()?;
    ensure!(
        files
            == BTreeSet::from([
                ".meta/meta.json".to_string(),
                "Other/v1.json".to_string(),
                "Revenue/v1.json".to_string()
            ]),
        "{files:?}"
    );
    ensure!(
        env.git(&["log", "-1", "--format=%s", "main"])?.trim()
            == "Version v1 Of Revenue: App is renamed"
    );
    let meta = env.meta()?;
    ensure!(meta["app-1"]["gitAppName"] == "Revenue" && meta["app-2"]["gitAppName"] == "Other");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn version_change_replaces_the_file() -> Result<()> {
    let env = setup()?;
    env.push(env.job("app-1", "Sales", "v1", "one", "")).await?;
    let r = env.push(env.job("app-1", "Sales", "v2", "one", "")).await?;
    let (_, path, kind) = committed(&r)?;
    ensure!(*kind == PushKind::VersionChange && path == "Sales/v2.json");
    ensure!(
        env.files()?
            == BTreeSet::from([".meta/meta.json".to_string(), "Sales/v2.json".to_string()])
    );
    ensure!(
        env.git(&["log", "-1", "--format=%s", "main"])?.trim()
            == "Version v2 Of Sales: Version creation"
    );
    ensure!(env.meta()?["app-1"]["gitVersionId"] == "v2-id");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_change_makes_no_commit_and_no_push() -> Result<()> {
    let env = setup()?;
    let first = env.push(env.job("app-1", "Sales", "v1", "one", "")).await?;
    let (sha, ..) = committed(&first)?;
    let before = env.worker.stats();
    // Same content under a later date and another message: still nothing to commit.
    let mut again = env.job("app-1", "Sales", "v1", "one", "nothing new");
    again.date = "2025-01-01T00:00:00Z".parse()?;
    let r = env.push(again).await?;
    ensure!(
        r == PushResult::NoChange {
            app_path: "Sales/v1.json".into(),
            head: Some(sha.to_owned())
        },
        "{r:?}"
    );
    let after = env.worker.stats();
    ensure!(
        after.pushes == before.pushes && after.commits == before.commits,
        "{after:?}"
    );
    ensure!(env.head()? == sha);
    ensure!(env.git(&["rev-list", "--count", "main"])?.trim() == "1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_push_writes_nothing() -> Result<()> {
    let env = setup()?;
    env.push(env.job("app-1", "Sales", "v1", "one", "")).await?;
    let head = env.head()?;
    // Another app may not take over an existing app's folder.
    let r = env.push(env.job("app-2", "Sales", "v1", "two", "")).await?;
    ensure!(matches!(r, PushResult::Refused(_)), "{r:?}");
    ensure!(env.head()? == head);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_jobs_at_once_make_one_batch() -> Result<()> {
    let env = setup()?;
    let jobs: Vec<_> = (0..20)
        .map(|i| env.job(&format!("app-{i}"), &format!("App {i}"), "v1", "x", ""))
        .collect();
    let results = futures::future::join_all(jobs.into_iter().map(|job| env.worker.push(job))).await;
    let mut shas = BTreeSet::new();
    for r in results {
        let r = r?;
        let (sha, _, kind) = committed(&r)?;
        ensure!(*kind == PushKind::Creation);
        shas.insert(sha.to_owned());
    }
    ensure!(shas.len() == 20, "one commit per app");
    let s = env.worker.stats();
    ensure!(
        s.pushes == 1 && s.fetches == 1 && s.commits == 20 && s.batches == 1,
        "{s:?}"
    );
    ensure!(env.git(&["rev-list", "--count", "main"])?.trim() == "20");
    let files = env.files()?;
    for i in 0..20 {
        ensure!(files.contains(&format!("App {i}/v1.json")), "{files:?}");
    }
    ensure!(env.meta()?.as_object().map(|m| m.len()) == Some(20));
    // Each commit carries its own app's message.
    let subjects = env.git(&["log", "--format=%s", "main"])?;
    ensure!(
        subjects
            .lines()
            .filter(|s| s.ends_with(": App creation"))
            .count()
            == 19
    );
    ensure!(subjects.lines().any(|s| s == "App creation"));
    Ok(())
}

/// A set's first backup: its AppSyncs hand their pushes over a few at a time, as their exports
/// come back. Pushes arriving 120 ms apart still make one batch, and reads asked meanwhile are
/// answered at once, not after the batch.
#[tokio::test(flavor = "multi_thread")]
async fn pushes_trickling_in_make_one_batch_and_reads_meanwhile_are_not_held() -> Result<()> {
    let env = setup()?;
    let first = env.push(env.job("seed", "Seed", "v1", "x", "seed")).await?;
    committed(&first)?;
    let before = env.worker.stats();
    let mut pushes = Vec::new();
    let mut reads = Vec::new();
    for i in 0..12 {
        let (worker, job) = (
            env.worker.clone(),
            env.job(&format!("app-{i}"), &format!("App {i}"), "v1", "x", ""),
        );
        pushes.push(tokio::spawn(async move { worker.push(job).await }));
        tokio::time::sleep(Duration::from_millis(120)).await;
        if i % 4 == 1 {
            // Answered from the mirror (fetched by the seed's push), while the batch lingers.
            let asked = Instant::now();
            let snap = env
                .worker
                .snapshot(env.transport.clone(), "main", Vec::new(), LONG)
                .await?;
            ensure!(snap.commit.is_some());
            reads.push(asked.elapsed());
            ensure!(
                pushes.iter().all(|p| !p.is_finished()),
                "read {} answered after the batch it arrived in",
                reads.len()
            );
        }
    }
    for p in pushes {
        committed(&p.await??)?;
    }
    let s = env.worker.stats();
    ensure!(
        s.batches - before.batches == 1 && s.pushes - before.pushes == 1,
        "one batch, one push for 12 pushes 120 ms apart: {s:?} after {before:?}"
    );
    ensure!(s.commits - before.commits == 12, "{s:?}");
    ensure!(reads.len() == 3, "{reads:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_push_is_reapplied_on_the_new_head() -> Result<()> {
    let env = setup()?;
    env.push(env.job("app-1", "Sales", "v1", "one", "")).await?;
    env.foreign_commit_during_next_push()?;
    let r = env
        .push(env.job("app-1", "Sales", "v1", "two", "second"))
        .await?;
    let (sha, ..) = committed(&r)?;
    let foreign = env.foreign_sha()?;
    ensure!(env.head()? == sha);
    ensure!(
        env.git(&["rev-parse", &format!("{sha}^")])?.trim() == foreign,
        "re-applied on the foreign commit"
    );
    ensure!(env.files()?.contains("foreign.txt"));
    let s = env.worker.stats();
    ensure!(s.push_rejections == 1 && s.pushes == 2, "{s:?}");
    let file: Value = serde_json::from_str(&env.git(&["show", "main:Sales/v1.json"])?)?;
    ensure!(file == export("Sales", "v1", "two"));
    Ok(())
}

impl Env {
    /// Makes the server's update hook land a foreign commit while the next push is in flight,
    /// once, so that push is rejected as non-fast-forward.
    fn foreign_commit_during_next_push(&self) -> Result<()> {
        let hook = self.server.repo_path(REPO).join("hooks/update");
        std::fs::write(
            &hook,
            r#"#!/bin/sh
if [ ! -e "$GIT_DIR/foreign-done" ] && [ "$2" != 0000000000000000000000000000000000000000 ]; then
  touch "$GIT_DIR/foreign-done"
  blob=$(echo foreign | git hash-object -w --stdin)
  base=$(git rev-parse "$2^{tree}")
  tree=$( (git ls-tree "$base"; printf '100644 blob %s\tforeign.txt\n' "$blob") | git mktree)
  c=$(GIT_AUTHOR_NAME=F GIT_AUTHOR_EMAIL=f@x GIT_COMMITTER_NAME=F GIT_COMMITTER_EMAIL=f@x git commit-tree "$tree" -p "$2" -m foreign)
  git update-ref "$1" "$c" "$2"
  echo "$c" > "$GIT_DIR/foreign-sha"
fi
exit 0
"#,
        )?;
        Command::new("chmod").arg("755").arg(&hook).status()?;
        Ok(())
    }

    /// The commit [`Env::foreign_commit_during_next_push`] landed.
    fn foreign_sha(&self) -> Result<String> {
        Ok(
            std::fs::read_to_string(self.server.repo_path(REPO).join("foreign-sha"))?
                .trim()
                .to_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_foreign_pushes_are_never_lost() -> Result<()> {
    let env = Arc::new(setup()?);
    env.push(env.job("app-0", "App 0", "v1", "x", "")).await?;
    env.precreate_object_dirs()?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let env = env.clone();
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let mut shas = Vec::new();
            while shas.len() < 50 && !stop.load(Ordering::Relaxed) {
                let path = format!("foreign/{}.txt", shas.len());
                // A rejected foreign push (the worker got in first) is simply tried again.
                if let Ok(sha) = env.server.commit_files(
                    REPO,
                    "main",
                    &[(path.as_str(), b"foreign".as_slice())],
                    "foreign",
                ) {
                    shas.push(sha);
                }
                std::thread::sleep(Duration::from_millis(40));
            }
            shas
        })
    };
    let mut outcome = Ok(());
    'jobs: for i in 1..=10 {
        let mut tries = 0;
        loop {
            tries += 1;
            let job = env.job(&format!("app-{i}"), &format!("App {i}"), "v1", "x", "");
            match env.worker.push(job).await {
                Ok(r) => {
                    if let Err(e) = committed(&r) {
                        outcome = Err(e);
                        break 'jobs;
                    }
                    break;
                }
                // The controller would requeue; so does the test.
                Err(WorkerError::PushRejected { .. }) if tries < 5 => continue,
                Err(e) => {
                    outcome = Err(e.into());
                    break 'jobs;
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let foreign = writer.await?;
    outcome?;
    ensure!(!foreign.is_empty());
    let head = env.head()?;
    for sha in &foreign {
        ensure!(env.is_ancestor(sha, &head), "foreign commit {sha} lost");
    }
    let files = env.files()?;
    for i in 0..=10 {
        ensure!(
            files.contains(&format!("App {i}/v1.json")),
            "app {i} missing"
        );
    }
    for i in 0..foreign.len() {
        ensure!(
            files.contains(&format!("foreign/{i}.txt")),
            "foreign file {i} missing"
        );
    }
    ensure!(env.meta()?.as_object().map(|m| m.len()) == Some(11));
    eprintln!(
        "foreign commits: {}, worker: {:?}",
        foreign.len(),
        env.worker.stats()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_mirror_is_rebuilt() -> Result<()> {
    let env = setup()?;
    let first = env.push(env.job("app-1", "Sales", "v1", "one", "")).await?;
    let (first_sha, ..) = committed(&first)?;
    let mirrors = env.data.path().join("mirrors");
    let entries: Vec<_> = std::fs::read_dir(&mirrors)?.collect::<Result<_, _>>()?;
    ensure!(entries.len() == 1, "one mirror per repository");
    let mirror = entries[0].path();
    std::fs::remove_dir_all(&mirror)?;
    let r = env
        .push(env.job("app-1", "Sales", "v1", "two", "again"))
        .await?;
    let (sha, _, kind) = committed(&r)?;
    ensure!(*kind == PushKind::Update);
    ensure!(env.git(&["rev-parse", &format!("{sha}^")])?.trim() == first_sha);
    ensure!(mirror.join("HEAD").exists(), "mirror rebuilt in place");

    // A damaged mirror (not a repository any more) is rebuilt too.
    std::fs::remove_dir_all(mirror.join("objects"))?;
    std::fs::write(mirror.join("HEAD"), "garbage")?;
    let r = env
        .push(env.job("app-1", "Sales", "v1", "three", "again"))
        .await?;
    let (sha3, ..) = committed(&r)?;
    ensure!(env.git(&["rev-parse", &format!("{sha3}^")])?.trim() == sha);

    // A new process (new Workers) reuses the mirror on disk.
    let workers = workers_in(env.data.path());
    let again = workers.get(&env.url);
    let snap = again
        .snapshot(env.transport.clone(), "main", vec!["Sales".into()], LONG)
        .await?;
    ensure!(snap.commit.map(|c| c.sha) == Some(sha3.to_owned()));
    drop(env.workers);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_at_branch_tag_and_sha() -> Result<()> {
    let env = setup()?;
    // An empty repository has nothing to read yet.
    let empty = env
        .worker
        .snapshot(env.transport.clone(), "main", vec!["Sales".into()], LONG)
        .await?;
    ensure!(empty.commit.is_none() && empty.meta_json.is_none() && empty.files.is_empty());

    let first = env.push(env.job("app-1", "Sales", "v1", "one", "")).await?;
    let (a, ..) = committed(&first)?;
    let a = a.to_owned();
    // The annotated tag is written as root: without the object directories made first (owned
    // by git), a later push whose objects fall into the tag's directory is refused by the
    // server ("unable to migrate objects to permanent storage").
    env.precreate_object_dirs()?;
    env.git(&["tag", "-a", "-m", "release", "release-1", &a])?;
    env.push(env.job("app-1", "Sales", "v1", "two", "second"))
        .await?;
    let b = env.head()?;
    env.push(env.job("app-2", "Other", "v1", "x", "")).await?;

    let text = |snap: &tooljet_gitsync_operator::git::worker::Snapshot| -> Result<Value> {
        Ok(serde_json::from_slice(
            snap.files.get("Sales/v1.json").context("Sales/v1.json")?,
        )?)
    };
    let at = |rev: &str| {
        let (worker, transport, rev) = (env.worker.clone(), env.transport.clone(), rev.to_owned());
        async move {
            worker
                .snapshot(transport, &rev, vec!["Sales".into()], Duration::ZERO)
                .await
        }
    };
    let main = at("main").await?;
    ensure!(
        main.files.keys().collect::<Vec<_>>() == ["Sales/v1.json"],
        "only the asked folder"
    );
    ensure!(text(&main)? == export("Sales", "v1", "two"));
    let meta: Value = serde_json::from_slice(main.meta_json.as_deref().context("meta")?)?;
    ensure!(meta.as_object().map(|m| m.len()) == Some(2));

    let tag = at("release-1").await?;
    ensure!(tag.commit.as_ref().map(|c| c.sha.as_str()) == Some(a.as_str()));
    ensure!(text(&tag)? == export("Sales", "v1", "one"));
    let meta: Value = serde_json::from_slice(tag.meta_json.as_deref().context("meta")?)?;
    ensure!(meta.as_object().map(|m| m.len()) == Some(1));

    let by_sha = at(&b).await?;
    ensure!(by_sha.commit.as_ref().map(|c| c.sha.as_str()) == Some(b.as_str()));
    ensure!(text(&by_sha)? == export("Sales", "v1", "two"));
    let short = at(&a[..10]).await?;
    ensure!(short.commit.map(|c| c.sha) == Some(a.clone()));

    for missing in [
        "nope",
        "0000000000000000000000000000000000000000",
        "main~1",
        "HEAD@{0}",
    ] {
        match at(missing).await {
            Err(e @ WorkerError::RevisionNotFound { .. }) => {
                ensure!(e.reason() == "RevisionNotFound");
            }
            other => anyhow::bail!("{missing}: {other:?}"),
        }
    }

    // Within max_age the fetch is shared.
    let before = env.worker.stats().fetches;
    let snaps = futures::future::join_all((0..5).map(|_| {
        env.worker.snapshot(
            env.transport.clone(),
            "main",
            vec![],
            Duration::from_secs(60),
        )
    }))
    .await;
    for s in snaps {
        s?;
    }
    ensure!(env.worker.stats().fetches <= before + 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_head_is_checked_once_per_interval() -> Result<()> {
    let env = setup()?;
    let sha = env
        .server
        .commit_files(REPO, "main", &[("README.md", b"hi")], "init")?;
    let heads = futures::future::join_all((0..25).map(|_| {
        env.worker
            .remote_head(env.transport.clone(), "main", Duration::from_secs(60))
    }))
    .await;
    for h in heads {
        ensure!(h?.as_deref() == Some(sha.as_str()));
    }
    ensure!(
        env.worker.stats().ls_remotes == 1,
        "{:?}",
        env.worker.stats()
    );
    // Another handle on the same repository shares the worker and its cache.
    let other = env.workers.get(&env.url);
    ensure!(
        other
            .remote_head(env.transport.clone(), "main", Duration::from_secs(60))
            .await?
            .as_deref()
            == Some(sha.as_str())
    );
    ensure!(env.worker.stats().ls_remotes == 1);

    // Expired: checked again, and a new commit is seen.
    let sha2 = env
        .server
        .commit_files(REPO, "main", &[("README.md", b"hi again")], "second")?;
    let h = env
        .worker
        .remote_head(env.transport.clone(), "main", Duration::ZERO)
        .await?;
    ensure!(h.as_deref() == Some(sha2.as_str()));
    ensure!(env.worker.stats().ls_remotes == 2);
    let missing = env
        .worker
        .remote_head(env.transport.clone(), "no-such-branch", LONG)
        .await?;
    ensure!(missing.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn check_runs_in_the_worker_and_feeds_the_head_cache() -> Result<()> {
    let env = setup()?;
    let sha = env
        .server
        .commit_files(REPO, "main", &[("README.md", b"hi")], "init")?;
    let outcome = env.worker.check(env.transport.clone(), "main").await?;
    let access = outcome
        .result
        .map_err(|(stage, f)| anyhow::anyhow!("{stage:?}: {f:?}"))?;
    ensure!(access.head.as_deref() == Some(sha.as_str()), "{access:?}");
    ensure!(
        outcome.learned_known_hosts.is_none(),
        "the host key was pinned"
    );
    let after_check = env.worker.stats().ls_remotes;
    ensure!(after_check == 1, "{:?}", env.worker.stats());
    // The head the check read answers a remote-head request without another ls-remote.
    let head = env
        .worker
        .remote_head(env.transport.clone(), "main", LONG)
        .await?;
    ensure!(head.as_deref() == Some(sha.as_str()));
    ensure!(
        env.worker.stats().ls_remotes == after_check,
        "{:?}",
        env.worker.stats()
    );

    // A key the server does not know fails the read stage, classified.
    let stranger = keys::generate(KeyType::Ed25519, "stranger")?;
    let refused = Transport {
        private_key: Some(stranger.private_openssh),
        host_keys: env.transport.host_keys.clone(),
        https: None,
    };
    let outcome = env.worker.check(refused, "main").await?;
    match outcome.result {
        Err((Stage::Read, f)) => ensure!(f.kind == GitFailureKind::AuthenticationFailed, "{f:?}"),
        other => anyhow::bail!("expected a read failure, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn last_commit_touching_ignores_other_apps() -> Result<()> {
    let env = setup()?;
    let a1 = env.push(env.job("app-a", "A", "v1", "one", "")).await?;
    let (a1, ..) = committed(&a1)?;
    let a1 = a1.to_owned();
    // Commits of another app (which also rewrite meta.json) and unrelated files do not count.
    env.push(env.job("app-b", "B", "v1", "one", "")).await?;
    env.push(env.job("app-b", "B", "v1", "two", "b2")).await?;
    env.server
        .commit_files(REPO, "main", &[("docs/readme.md", b"x")], "docs")?;
    let t = env.transport.clone();
    let found = env
        .worker
        .last_commit_touching(t.clone(), "main", None, "A", "app-a", Duration::ZERO)
        .await?
        .context("A was committed")?;
    ensure!(
        found.sha == a1 && found.message == "App creation",
        "{found:?}"
    );
    let none = env
        .worker
        .last_commit_touching(t.clone(), "main", Some(&a1), "A", "app-a", LONG)
        .await?;
    ensure!(none.is_none(), "nothing new for A since {a1}: {none:?}");

    // A change of A's meta entry alone (a foreign edit of meta.json) counts.
    let mut meta = env.meta()?;
    meta["app-a"]["lastCommitMessage"] = json!("edited by hand");
    let text = serde_json::to_string_pretty(&meta)?;
    let edited = env.server.commit_files(
        REPO,
        "main",
        &[(".meta/meta.json", text.as_bytes())],
        "hand edit",
    )?;
    let found = env
        .worker
        .last_commit_touching(t.clone(), "main", Some(&a1), "A", "app-a", Duration::ZERO)
        .await?;
    ensure!(found.map(|c| c.sha) == Some(edited.clone()));

    let a2 = env.push(env.job("app-a", "A", "v1", "two", "a2")).await?;
    let (a2, ..) = committed(&a2)?;
    env.push(env.job("app-b", "B", "v1", "three", "b3")).await?;
    let found = env
        .worker
        .last_commit_touching(t.clone(), "main", Some(&a1), "A", "app-a", Duration::ZERO)
        .await?
        .context("A changed")?;
    ensure!(
        found.sha == a2 && found.message == "Version v1 Of A: a2" && found.author == "Jane Doe"
    );
    let found = env
        .worker
        .last_commit_touching(t.clone(), &a1, None, "A", "app-a", LONG)
        .await?;
    ensure!(found.map(|c| c.sha) == Some(a1.clone()));
    match env
        .worker
        .last_commit_touching(t, "main", Some("nope"), "A", "app-a", LONG)
        .await
    {
        Err(WorkerError::RevisionNotFound { revision }) => ensure!(revision == "nope"),
        other => anyhow::bail!("{other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_failures_keep_their_kind() -> Result<()> {
    let env = setup()?;
    // A key the server does not know.
    let stranger = keys::generate(KeyType::Ed25519, "stranger")?;
    let mut job = env.job("app-1", "Sales", "v1", "one", "");
    job.transport = Transport {
        private_key: Some(stranger.private_openssh),
        host_keys: env.transport.host_keys.clone(),
        https: None,
    };
    let e = env.worker.push(job).await.err().context("must fail")?;
    ensure!(
        e.git_kind() == Some(GitFailureKind::AuthenticationFailed),
        "{e:?}"
    );
    ensure!(e.reason() == "AuthenticationFailed");
    ensure!(!e.to_string().contains("PRIVATE KEY"));

    // The right key, but another server's host key pinned for this address.
    let other = GitServer::start()?;
    let wrong = other.known_hosts_line()?.replace(
        &format!(":{} ", other.port()),
        &format!(":{} ", env.server.port()),
    );
    let mut job = env.job("app-1", "Sales", "v1", "one", "");
    job.transport.host_keys = HostKeyPolicy::Pinned(wrong.clone());
    let e = env.worker.push(job).await.err().context("must fail")?;
    ensure!(
        e.git_kind() == Some(GitFailureKind::HostKeyMismatch),
        "{e:?}"
    );
    ensure!(e.reason() == "HostKeyMismatch" && e.to_string().contains("knownHosts"));
    let e = env
        .worker
        .remote_head(
            Transport {
                private_key: env.transport.private_key.clone(),
                host_keys: HostKeyPolicy::Pinned(wrong),
                https: None,
            },
            "main",
            LONG,
        )
        .await
        .err()
        .context("must fail")?;
    ensure!(e.reason() == "HostKeyMismatch", "{e:?}");

    // Nothing was written, and the right transport still works.
    ensure!(env.git(&["rev-parse", "--verify", "-q", "main"]).is_err());
    let r = env.push(env.job("app-1", "Sales", "v1", "one", "")).await?;
    committed(&r)?;
    Ok(())
}

/// A TCP server on loopback that accepts every connection and never sends a byte.
fn silent_server() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    Ok(port)
}

/// Processes whose command line mentions `needle` (the ssh and git a worker started).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn stuck_repositories_end_within_their_deadlines() -> Result<()> {
    const COMMAND: Duration = Duration::from_secs(3);
    const FETCH: Duration = Duration::from_secs(6);
    const REQUEST: Duration = Duration::from_secs(9);
    let server = GitServer::start()?;
    let healthy_url = RepoUrl::parse(&server.create_repo("healthy")?)?;
    let stuck_url = RepoUrl::parse(&server.create_repo("stuck")?)?;
    let good = keys::generate(KeyType::Ed25519, "good")?;
    server.authorize(&good.info.public_openssh, Access::ReadWrite)?;
    let stalling = keys::generate(KeyType::Ed25519, "stalling")?;
    server.authorize(&stalling.info.public_openssh, Access::Stalls)?;
    let pinned = HostKeyPolicy::Pinned(server.known_hosts_line()?);
    let transport = |key: &keys::DeployKey, host_keys: HostKeyPolicy| Transport {
        private_key: Some(key.private_openssh.clone()),
        host_keys,
        https: None,
    };
    let silent_url = RepoUrl::parse(&format!("ssh://git@127.0.0.1:{}/x.git", silent_server()?))?;
    let data = tempfile::tempdir()?;
    let scratch = data.path().join("scratch");
    let workers = Workers::with_request_timeout(
        GitCli::new(&scratch, COMMAND).with_fetch_timeout(FETCH),
        data.path().join("mirrors"),
        REQUEST,
    );
    let started = std::time::Instant::now();
    let snapshot = |url: &RepoUrl, t: Transport| {
        let worker = workers.get(url);
        tokio::spawn(async move {
            let r = worker.snapshot(t, "main", vec![], Duration::ZERO).await;
            (r, started.elapsed())
        })
    };
    // Accepts TCP, never answers; authenticates, then never answers (twice, queued).
    let silent = snapshot(
        &silent_url,
        transport(&good, HostKeyPolicy::TrustOnFirstUse),
    );
    let stalled = snapshot(&stuck_url, transport(&stalling, pinned.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = snapshot(&stuck_url, transport(&stalling, pinned.clone()));

    // Meanwhile a healthy repository of the same Workers keeps answering.
    let healthy = workers.get(&healthy_url);
    let job = job_with(
        transport(&good, pinned.clone()),
        "app-1",
        "Sales",
        "v1",
        "x",
        "",
    );
    let pushed = healthy.push(job).await?;
    let (sha, ..) = committed(&pushed)?;
    let snap = healthy
        .snapshot(transport(&good, pinned), "main", vec!["Sales".into()], LONG)
        .await?;
    ensure!(snap.commit.map(|c| c.sha).as_deref() == Some(sha));
    ensure!(
        !silent.is_finished() && !stalled.is_finished() && !queued.is_finished(),
        "the healthy repository answered while the stuck ones still hang ({:?})",
        started.elapsed()
    );

    let (r, took) = silent.await?;
    let e = r.err().context("a silent server cannot answer")?;
    ensure!(e.reason() == "RepositoryUnreachable", "{e:?}");
    ensure!(e.to_string().contains("within 3s"), "{e}");
    ensure!(took < Duration::from_secs(12), "silent server: {took:?}");
    eprintln!("silent server, {took:?}: {e}");

    let (r, took) = stalled.await?;
    let e = r.err().context("a stalled server cannot answer")?;
    ensure!(e.reason() == "RepositoryUnreachable", "{e:?}");
    ensure!(e.to_string().contains("within 6s"), "{e}");
    ensure!(
        took >= FETCH && took < FETCH + Duration::from_secs(4),
        "stalled: {took:?}"
    );
    eprintln!("stalled server, {took:?}: {e}");

    // Queued behind the stalled fetch: the caller stops waiting at its deadline.
    let (r, took) = queued.await?;
    let e = r.err().context("queued behind a stalled fetch")?;
    ensure!(matches!(e, WorkerError::Busy { .. }), "{e:?}");
    ensure!(
        e.reason() == "RepositoryBusy" && e.to_string().contains("9s"),
        "{e}"
    );
    ensure!(took < REQUEST + Duration::from_secs(2), "queued: {took:?}");

    // Every ssh the worker started was killed at its deadline (the queued request's fetch
    // ends at two fetch timeouts).
    let settled = FETCH * 2 + Duration::from_secs(2);
    tokio::time::sleep(settled.saturating_sub(started.elapsed())).await;
    let left = processes_mentioning(&scratch.to_string_lossy());
    ensure!(left.is_empty(), "processes left: {left:?}");
    Ok(())
}

impl Env {
    /// The one mirror of this test's data directory.
    fn mirror_dir(&self) -> Result<std::path::PathBuf> {
        let mut dirs: Vec<_> = std::fs::read_dir(self.data.path().join("mirrors"))?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|e| e.path())
            .filter(|p| p.join("HEAD").exists())
            .collect();
        ensure!(dirs.len() == 1, "one mirror expected: {dirs:?}");
        Ok(dirs.remove(0))
    }

    /// Whether the mirror holds object `sha`.
    fn mirror_has(&self, sha: &str) -> Result<bool> {
        let st = Command::new("git")
            .args(["-c", "safe.directory=*", "-C"])
            .arg(self.mirror_dir()?)
            .args(["cat-file", "-e", sha])
            .status()?;
        Ok(st.success())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_fetches_keep_the_mirror() -> Result<()> {
    let env = setup()?;
    let pushed = env.push(env.job("app-1", "Sales", "v1", "one", "")).await?;
    let (sha, ..) = committed(&pushed)?;
    let sha = sha.to_owned();
    ensure!(env.mirror_has(&sha)?);

    // A key the repository refuses: the fetch fails, the mirror keeps everything.
    let stranger = keys::generate(KeyType::Ed25519, "stranger")?;
    let refused = Transport {
        private_key: Some(stranger.private_openssh),
        host_keys: env.transport.host_keys.clone(),
        https: None,
    };
    let e = env
        .worker
        .snapshot(refused, "main", vec![], Duration::ZERO)
        .await
        .err()
        .context("an unknown key cannot fetch")?;
    ensure!(e.reason() == "AuthenticationFailed", "{e:?}");
    ensure!(env.mirror_has(&sha)?, "mirror emptied by an auth failure");

    // The server answers ls-remote but cannot send a pack (an object of its head is gone):
    // a failure of the fetch itself, not of the mirror. The mirror stays.
    let content = b"this blob goes missing on the server";
    env.server
        .commit_files(REPO, "main", &[("lost.txt", content.as_slice())], "lost")?;
    let blob = blob_id(content)?;
    let loose = env
        .server
        .repo_path(REPO)
        .join("objects")
        .join(&blob[..2])
        .join(&blob[2..]);
    std::fs::remove_file(&loose).with_context(|| format!("{}", loose.display()))?;
    let e = env
        .worker
        .snapshot(env.transport.clone(), "main", vec![], Duration::ZERO)
        .await
        .err()
        .context("the server cannot send its head")?;
    ensure!(e.reason() == "GitError", "{e:?}");
    ensure!(
        e.to_string().contains("mirror is sound and was kept"),
        "{e}"
    );
    ensure!(env.mirror_has(&sha)?, "mirror emptied by a failed fetch");

    // The server is healthy again (its head back on a commit it has all objects of)...
    env.git(&["update-ref", "refs/heads/main", &sha])?;
    // ...and a corrupt mirror (objects gone, refs left) is rebuilt: the next request works.
    let mirror = env.mirror_dir()?;
    for file in walk_files(&mirror.join("objects"))? {
        if !file.starts_with(mirror.join("objects/info")) {
            std::fs::remove_file(file)?;
        }
    }
    let mut last = None;
    for _ in 0..2 {
        match env
            .worker
            .snapshot(env.transport.clone(), "main", vec![], Duration::ZERO)
            .await
        {
            Ok(snap) => {
                last = snap.commit.map(|c| c.sha);
                break;
            }
            Err(e) => ensure!(e.reason() == "InternalError", "{e:?}"),
        }
    }
    ensure!(last.as_deref() == Some(sha.as_str()), "{last:?}");
    ensure!(env.mirror_has(&sha)?);
    Ok(())
}

/// The id git gives `content` as a blob.
fn blob_id(content: &[u8]) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new("git")
        .args(["hash-object", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(content)?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success());
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Every file below `dir`.
fn walk_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk_files(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

/// What a foreign commit puts where ToolJet's layout has a file.
#[derive(Clone, Copy, Debug)]
enum Entry {
    Symlink,
    Directory,
    Submodule,
}

impl Env {
    /// Commits `entry` at `path` on `main` (replacing what is there) as a foreign writer, with
    /// plain git in a work tree pushed to the server's repository; returns the commit.
    fn commit_entry(&self, path: &str, entry: Entry) -> Result<String> {
        let work = tempfile::tempdir()?;
        // Root reading the git user's repository: trust it (for upload-pack too).
        let global = work.path().join("gitconfig");
        std::fs::write(&global, "[safe]\n\tdirectory = *\n")?;
        let w = &work.path().join("work");
        std::fs::create_dir_all(w)?;
        let git = |args: &[&str]| -> Result<String> {
            let out = Command::new("git")
                .args(["-c", "user.name=F", "-c", "user.email=f@x"])
                .args(args)
                .env("GIT_CONFIG_GLOBAL", &global)
                .current_dir(w)
                .output()?;
            ensure!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        let repo = self.server.repo_path(REPO).to_string_lossy().into_owned();
        git(&["init", "-q", "-b", "main"])?;
        git(&["fetch", "-q", &repo, "main"])?;
        git(&["checkout", "-q", "FETCH_HEAD"])?;
        let _ = git(&["rm", "-r", "-q", "--ignore-unmatch", "--", path]);
        let full = w.join(path);
        // What `rm` leaves (a submodule's empty directory).
        if full.is_dir() {
            std::fs::remove_dir_all(&full)?;
        }
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match entry {
            Entry::Symlink => std::os::unix::fs::symlink("../Sales/v1.json", &full)?,
            Entry::Directory => {
                std::fs::create_dir_all(&full)?;
                std::fs::write(full.join("x.json"), "{}")?;
            }
            Entry::Submodule => {}
        }
        git(&["add", "-A"])?;
        if let Entry::Submodule = entry {
            // A gitlink has no work-tree form that `add` would keep: straight into the index.
            let head = git(&["rev-parse", "HEAD"])?;
            git(&[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("160000,{head},{path}"),
            ])?;
        }
        git(&["commit", "-q", "-m", &format!("{path} as {entry:?}")])?;
        git(&["push", "-q", &repo, "HEAD:refs/heads/main"])?;
        let st = Command::new("chown")
            .args(["-R", "git:git"])
            .arg(self.server.repo_path(REPO))
            .status()?;
        ensure!(st.success());
        git(&["rev-parse", "HEAD"])
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_json_that_is_no_file_is_refused_not_replaced() -> Result<()> {
    let env = setup()?;
    env.push(env.job("app-1", "Sales", "v1", "one", "")).await?;
    for (path, entry, found) in [
        (".meta/meta.json", Entry::Symlink, "a symbolic link"),
        (".meta/meta.json", Entry::Directory, "a directory"),
        (".meta/meta.json", Entry::Submodule, "a submodule"),
        (".meta", Entry::Symlink, "a symbolic link"),
    ] {
        let head = env.commit_entry(path, entry)?;
        let what = format!("{path} as {entry:?}");
        // Push: refused, nothing written.
        let e = env
            .worker
            .push(env.job("app-2", "Other", "v1", "x", ""))
            .await
            .err()
            .with_context(|| format!("{what}: the push must be refused"))?;
        ensure!(e.reason() == "InvalidRepositoryContent", "{what}: {e:?}");
        let message = e.to_string();
        ensure!(
            message.contains(&format!("{path} in the repository is {found}")),
            "{what}: {message}"
        );
        ensure!(env.head()? == head, "{what}: the branch moved");
        // Pull: the snapshot is refused too.
        let e = env
            .worker
            .snapshot(env.transport.clone(), "main", vec![], Duration::ZERO)
            .await
            .err()
            .with_context(|| format!("{what}: the snapshot must be refused"))?;
        ensure!(e.reason() == "InvalidRepositoryContent", "{what}: {e:?}");
        ensure!(e.to_string().contains(path), "{what}: {e}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn newer_gitsync_layout_is_refused_on_push_and_pull() -> Result<()> {
    let env = setup()?;
    // A legacy app may be called "apps": its folder holds version files only.
    let legacy = env.push(env.job("app-0", "apps", "v1", "x", "")).await?;
    committed(&legacy)?;
    let app_json = br#"{"id": "6c1f0b3e-2f55-4f0b-9d7e-0a5f3c1d2e4f", "name": "Sales"}"#;
    for (repo, files, evidence) in [
        (
            "gitsync2",
            vec![
                ("apps/Sales/app/app.json", app_json.as_slice()),
                ("apps/Sales/components/button1.json", b"{}".as_slice()),
            ],
            "apps/Sales/app/app.json",
        ),
        (
            "gitsync2-folders",
            vec![("apps/Dashboards/Sales/app/app.json", app_json.as_slice())],
            "apps/Dashboards/Sales/app/app.json",
        ),
        (
            "gitsync2-meta",
            vec![(
                ".meta/appMeta.json",
                br#"{"x": {"appPath": "apps/Sales"}}"#.as_slice(),
            )],
            ".meta/appMeta.json",
        ),
        (
            "gitsync2-datasources",
            vec![("data-sources/pg/data-source.json", b"{}".as_slice())],
            "data-sources/pg/data-source.json",
        ),
    ] {
        let url = RepoUrl::parse(&env.server.create_repo(repo)?)?;
        let head = env
            .server
            .commit_files(repo, "main", &files, "GitSync 2.0")?;
        let worker = env.workers.get(&url);
        let e = worker
            .push(env.job("app-1", "Sales", "v1", "one", ""))
            .await
            .err()
            .with_context(|| format!("{repo}: the push must be refused"))?;
        ensure!(e.reason() == "UnsupportedRepositoryLayout", "{repo}: {e:?}");
        ensure!(
            e.to_string().contains(evidence)
                && e.to_string().contains("nothing was read or written"),
            "{repo}: {e}"
        );
        let now = env.server.git(repo, &["rev-parse", "main"])?;
        ensure!(now.trim() == head, "{repo}: the branch moved");
        let e = worker
            .snapshot(env.transport.clone(), "main", vec![], Duration::ZERO)
            .await
            .err()
            .with_context(|| format!("{repo}: the snapshot must be refused"))?;
        ensure!(e.reason() == "UnsupportedRepositoryLayout", "{repo}: {e:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rewound_or_switched_branch_counts_as_touching_the_app() -> Result<()> {
    let env = setup()?;
    let sha = |r: &PushResult| committed(r).map(|(s, ..)| s.to_owned());
    let a1 = sha(&env.push(env.job("app-a", "A", "v1", "one", "")).await?)?;
    let b1 = sha(&env.push(env.job("app-b", "B", "v1", "one", "")).await?)?;
    let a2 = sha(&env.push(env.job("app-a", "A", "v1", "two", "a2")).await?)?;
    let t = env.transport.clone();
    let touching = |since: &str| {
        let (worker, t, since) = (env.worker.clone(), t.clone(), since.to_owned());
        async move {
            worker
                .last_commit_touching(t, "main", Some(&since), "A", "app-a", Duration::ZERO)
                .await
        }
    };
    ensure!(touching(&a2).await?.is_none(), "nothing after a2 yet");
    ensure!(env.worker.is_ancestor(t.clone(), &a1, &a2, LONG).await?);
    ensure!(env.worker.is_ancestor(t.clone(), &a2, &a2, LONG).await?);
    ensure!(!env.worker.is_ancestor(t.clone(), &a2, &b1, LONG).await?);

    // Force-pushed back to b1: A's content went back to a1's, yet no commit since a2 is new.
    env.git(&["update-ref", "refs/heads/main", &b1])?;
    let found = touching(&a2)
        .await?
        .context("a rewound branch touches the app")?;
    ensure!(found.sha == b1, "{found:?}");
    ensure!(!env.worker.is_ancestor(t.clone(), &a2, "main", LONG).await?);
    ensure!(env.worker.is_ancestor(t.clone(), &b1, "main", LONG).await?);

    // Switched to an unrelated history that never had A at all.
    let other =
        env.server
            .commit_files(REPO, "unrelated", &[("README.md", b"new start")], "root")?;
    env.git(&["update-ref", "refs/heads/main", &other])?;
    let found = touching(&b1)
        .await?
        .context("a switched branch touches the app")?;
    ensure!(found.sha == other, "{found:?}");
    ensure!(
        !env.worker
            .is_ancestor(t.clone(), &b1, "main", Duration::ZERO)
            .await?
    );

    // An ancestor the repository never had is no ancestor; a missing descendant is an error.
    let nowhere = "0123456789abcdef0123456789abcdef01234567";
    ensure!(
        !env.worker
            .is_ancestor(t.clone(), nowhere, "main", LONG)
            .await?
    );
    match env.worker.is_ancestor(t, &a1, "nope", LONG).await {
        Err(WorkerError::RevisionNotFound { revision }) => ensure!(revision == "nope"),
        other => anyhow::bail!("{other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn forgotten_worker_finishes_before_its_successor_starts() -> Result<()> {
    let env = setup()?;
    let identity = env.url.identity();
    let workers = workers_in(&env.data.path().join("second"));
    let old = workers.get(&env.url);
    let first = old.push(env.job("app-1", "A", "v1", "x", "")).await?;
    committed(&first)?;
    ensure!(workers.contains(&identity));

    // A push still in flight on the old worker when the repository is forgotten.
    let in_flight = {
        let (old, job) = (old.clone(), env.job("app-2", "B", "v1", "x", ""));
        tokio::spawn(async move { old.push(job).await })
    };
    drop(old);
    ensure!(workers.forget(&identity), "there was a worker");
    ensure!(!workers.contains(&identity) && !workers.forget(&identity));

    // A new worker (fresh caches and counters) on the same mirror, after the old one is done.
    let new = workers.get(&env.url);
    ensure!(new.stats() == Default::default(), "{:?}", new.stats());
    let third = new.push(env.job("app-3", "C", "v1", "x", "")).await?;
    let second = in_flight.await??;
    let (second, ..) = committed(&second)?;
    let (third, ..) = committed(&third)?;
    ensure!(
        env.git(&["rev-parse", &format!("{third}^")])?.trim() == second,
        "the successor fetched what its predecessor pushed"
    );
    ensure!(
        new.stats().push_rejections == 0 && new.stats().fetches == 1,
        "{:?}",
        new.stats()
    );
    Ok(())
}

/// Lock files a killed operator left in `dir` (every ref file gets a `.lock` sibling, as a
/// fetch killed while updating refs leaves them).
fn leave_stale_locks(dir: &Path) -> Result<usize> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut refs = Vec::new();
    walk(&dir.join("refs"), &mut refs)?;
    for r in &refs {
        let mut lock = r.clone().into_os_string();
        lock.push(".lock");
        std::fs::write(lock, b"")?;
    }
    std::fs::write(dir.join("packed-refs.lock"), b"")?;
    std::fs::write(dir.join("objects/pack/tmp_pack_stale"), b"half a pack")?;
    Ok(refs.len() + 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn locks_left_by_a_killed_process_do_not_wedge_the_mirror() -> Result<()> {
    let env = setup()?;
    env.push(env.job("app-1", "Sales", "v1", "one", "")).await?;
    let mirror = env.mirror_dir()?;
    let left = leave_stale_locks(&mirror)?;
    ensure!(left >= 2, "the mirror has refs to lock");
    // A new operator process: new workers on the same data dir.
    let workers = workers_in(env.data.path());
    let worker = workers.get(&env.url);
    let foreign =
        env.server
            .commit_files(REPO, "main", &[("foreign.txt", b"x".as_slice())], "foreign")?;
    let snap = worker
        .snapshot(env.transport.clone(), "main", vec![], Duration::ZERO)
        .await
        .context("a fetch after a crash")?;
    ensure!(snap.commit.as_ref().map(|c| c.sha.as_str()) == Some(foreign.as_str()));
    ensure!(!mirror.join("packed-refs.lock").exists());
    ensure!(!mirror.join("objects/pack/tmp_pack_stale").exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ref_moves_are_announced_and_make_other_transports_fetch_again() -> Result<()> {
    let env = setup()?;
    let mut moves = env.workers.moves();
    // A second config on the same repository, with its own read-only key.
    let key = keys::generate(KeyType::Ed25519, "reader")?;
    env.server
        .authorize(&key.info.public_openssh, Access::ReadOnly)?;
    let reader = Transport {
        private_key: Some(key.private_openssh),
        host_keys: HostKeyPolicy::Pinned(env.server.known_hosts_line()?),
        https: None,
    };
    // The reader looks first, at an empty repository: no news for anyone.
    let empty = env
        .worker
        .snapshot(reader.clone(), "main", Vec::new(), LONG)
        .await?;
    ensure!(empty.commit.is_none() && empty.meta_json.is_none());
    ensure!(moves.try_recv().is_err(), "the first look is no move");
    // The writer pushes: the branch appeared, and the reader's hour-old-allowed view is stale.
    let pushed = env
        .push(env.job("app-1", "Sales", "v1", "one", "first"))
        .await?;
    let (sha, _, _) = committed(&pushed)?;
    let moved = tokio::time::timeout(Duration::from_secs(5), moves.recv()).await??;
    ensure!(moved.reference == "refs/heads/main", "{moved:?}");
    ensure!(moved.repository == env.url.identity());
    ensure!(moved.concerns(&env.url.identity(), "main"));
    let fetches = env.worker.stats().fetches;
    let seen = env
        .worker
        .snapshot(reader.clone(), "main", Vec::new(), LONG)
        .await?;
    ensure!(seen.commit.as_ref().map(|c| c.sha.as_str()) == Some(sha));
    ensure!(
        env.worker.stats().fetches == fetches + 1,
        "the reader fetched with its own key"
    );
    // Seen now: the next read within max_age fetches nothing, and nothing moved.
    env.worker
        .snapshot(reader.clone(), "main", Vec::new(), LONG)
        .await?;
    ensure!(env.worker.stats().fetches == fetches + 1);
    ensure!(moves.try_recv().is_err(), "{:?}", moves.try_recv());
    // A foreign push is seen by the next fetch, and announced.
    let foreign = env
        .server
        .commit_files(REPO, "main", &[("README.md", b"by hand")], "foreign")?;
    let seen = env
        .worker
        .snapshot(reader.clone(), "main", Vec::new(), Duration::ZERO)
        .await?;
    ensure!(seen.commit.map(|c| c.sha) == Some(foreign));
    let moved = tokio::time::timeout(Duration::from_secs(5), moves.recv()).await??;
    ensure!(moved.reference == "refs/heads/main");
    // The writer's cached head went with the move: its next check is no stale answer.
    let head = env
        .worker
        .remote_head(env.transport.clone(), "main", LONG)
        .await?;
    ensure!(head.as_deref() == Some(env.head()?.as_str()));
    // The writer pushes again: the reader's record still resolves main, to the old commit,
    // and must not be believed.
    let pushed = env
        .push(env.job("app-1", "Sales", "v1", "two", "second"))
        .await?;
    let (sha2, _, _) = committed(&pushed)?;
    let seen = env
        .worker
        .snapshot(reader.clone(), "main", Vec::new(), LONG)
        .await?;
    ensure!(seen.commit.map(|c| c.sha).as_deref() == Some(sha2));
    Ok(())
}

/// A signing key made by the real `ssh-keygen`, as a user makes one.
fn ssh_keygen_signer(args: &[&str]) -> Result<Arc<CommitSigner>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("identity");
    let st = Command::new("ssh-keygen")
        .args(args)
        .args(["-q", "-N", "", "-C", "signer@test", "-f"])
        .arg(&path)
        .status()?;
    ensure!(st.success(), "ssh-keygen {args:?}");
    Ok(Arc::new(CommitSigner::from_openssh(&std::fs::read(
        &path,
    )?)?))
}

/// A push job of `env`'s transport signed with `signer`.
fn signed(mut job: PushJob, signer: &Arc<CommitSigner>) -> PushJob {
    job.signing = Some(signer.clone());
    job
}

impl Env {
    /// `git verify-commit` (the real git, `gpg.format=ssh`) of `sha` against an allowed-signers
    /// file listing `trusted`; on success the fingerprint git saw (`%GK`, with `%G?` = `G`).
    fn verify_commit(&self, sha: &str, trusted: &[&CommitSigner]) -> Result<String> {
        let dir = tempfile::tempdir()?;
        let allowed = dir.path().join("allowed_signers");
        let lines: String = trusted
            .iter()
            .map(|s| format!("* namespaces=\"git\" {}\n", s.public_openssh()))
            .collect();
        std::fs::write(&allowed, lines)?;
        let allowed = format!("gpg.ssh.allowedSignersFile={}", allowed.display());
        let run = |args: &[&str]| {
            Command::new("git")
                .args(["-c", "safe.directory=*", "-c", "gpg.format=ssh", "-c"])
                .arg(&allowed)
                .arg("-C")
                .arg(self.server.repo_path(REPO))
                .args(args)
                .output()
        };
        let out = run(&["verify-commit", sha])?;
        ensure!(
            out.status.success(),
            "git verify-commit {sha}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = run(&["log", "-1", "--format=%G? %GK", sha])?;
        let shown = String::from_utf8_lossy(&shown.stdout).trim().to_owned();
        let fingerprint = shown
            .strip_prefix("G ")
            .with_context(|| format!("git log says {shown:?} of {sha}"))?;
        Ok(fingerprint.to_owned())
    }

    /// Whether commit `sha` carries a `gpgsig` header at all.
    fn has_signature(&self, sha: &str) -> Result<bool> {
        let raw = self.git(&["cat-file", "commit", sha])?;
        let headers = raw.split("\n\n").next().unwrap_or_default();
        Ok(headers.lines().any(|l| l.starts_with("gpgsig ")))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_commits_verify_with_git_for_ed25519_rsa_and_ecdsa() -> Result<()> {
    let env = setup()?;
    let ed = ssh_keygen_signer(&["-t", "ed25519"])?;
    let rsa = ssh_keygen_signer(&["-t", "rsa", "-b", "3072"])?;
    let ecdsa = ssh_keygen_signer(&["-t", "ecdsa", "-b", "256"])?;
    let mut shas = Vec::new();
    for (i, signer) in [&ed, &rsa, &ecdsa].into_iter().enumerate() {
        let job = env.job(&format!("app-{i}"), &format!("App {i}"), "v1", "x", "");
        let r = env.push(signed(job, signer)).await?;
        let (sha, ..) = committed(&r)?;
        ensure!(env.head()? == sha, "pushed");
        ensure!(env.has_signature(sha)?, "no gpgsig header");
        let raw = env.git(&["cat-file", "commit", sha])?;
        ensure!(
            raw.contains("gpgsig -----BEGIN SSH SIGNATURE-----\n ")
                && raw.contains("\n -----END SSH SIGNATURE-----\n"),
            "{raw}"
        );
        let seen = env.verify_commit(sha, &[signer])?;
        ensure!(
            seen == signer.fingerprint(),
            "{seen} != {}",
            signer.fingerprint()
        );
        shas.push(sha.to_owned());
    }
    // The check can fail: each commit is refused when only the other key is trusted.
    ensure!(
        env.verify_commit(&shas[0], &[&rsa]).is_err(),
        "ed25519 commit verified with the RSA key"
    );
    ensure!(
        env.verify_commit(&shas[1], &[&ed]).is_err(),
        "RSA commit verified with the ed25519 key"
    );
    ensure!(
        env.verify_commit(&shas[2], &[&ed, &rsa]).is_err(),
        "ECDSA commit verified with other keys"
    );
    // Signing changes nothing else of the commit: the author and message stay.
    let shown = env.git(&["log", "-1", "--format=%an|%ae|%s", "main"])?;
    ensure!(
        shown.trim().starts_with("Jane Doe|jane@example.com|")
            && shown.trim().ends_with("App creation"),
        "{shown}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_signed_push_is_signed_again_on_the_new_head() -> Result<()> {
    let env = setup()?;
    let signer = ssh_keygen_signer(&["-t", "ed25519"])?;
    let first = env
        .push(signed(env.job("app-1", "Sales", "v1", "one", ""), &signer))
        .await?;
    let (first_sha, ..) = committed(&first)?;
    env.verify_commit(first_sha, &[&signer])?;
    env.foreign_commit_during_next_push()?;
    let r = env
        .push(signed(
            env.job("app-1", "Sales", "v1", "two", "second"),
            &signer,
        ))
        .await?;
    let (sha, ..) = committed(&r)?;
    let foreign = env.foreign_sha()?;
    ensure!(env.head()? == sha);
    ensure!(
        env.git(&["rev-parse", &format!("{sha}^")])?.trim() == foreign,
        "re-made on the foreign commit"
    );
    let s = env.worker.stats();
    ensure!(s.push_rejections == 1 && s.pushes == 2, "{s:?}");
    // The re-made commit carries a signature of its own content (new parent), which verifies.
    ensure!(env.verify_commit(sha, &[&signer])? == signer.fingerprint());
    ensure!(
        !env.has_signature(&foreign)?,
        "the foreign commit is the hook's, unsigned"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_signs_each_commit_with_its_own_jobs_key() -> Result<()> {
    let env = setup()?;
    let a = ssh_keygen_signer(&["-t", "ed25519"])?;
    let b = ssh_keygen_signer(&["-t", "ed25519"])?;
    // Queued at once, on one branch and transport: one batch, one lane per signer.
    let jobs = vec![
        signed(env.job("app-a", "App A", "v1", "x", ""), &a),
        signed(env.job("app-b", "App B", "v1", "x", ""), &b),
        env.job("app-n", "App N", "v1", "x", ""),
        signed(env.job("app-a2", "App A2", "v1", "x", ""), &a),
    ];
    let results = futures::future::join_all(jobs.into_iter().map(|job| env.worker.push(job))).await;
    let mut shas = Vec::new();
    for r in results {
        shas.push(committed(&r?)?.0.to_owned());
    }
    let s = env.worker.stats();
    ensure!(s.batches == 1 && s.commits == 4, "{s:?}");
    ensure!(
        s.pushes == 3,
        "one push per signer lane (a, b, unsigned): {s:?}"
    );
    let head = env.head()?;
    for sha in &shas {
        ensure!(env.is_ancestor(sha, &head), "{sha} not on the branch");
    }
    for i in [0, 3] {
        ensure!(env.verify_commit(&shas[i], &[&a])? == a.fingerprint());
        ensure!(
            env.verify_commit(&shas[i], &[&b]).is_err(),
            "commit {i} verified with b"
        );
    }
    ensure!(env.verify_commit(&shas[1], &[&b])? == b.fingerprint());
    ensure!(
        env.verify_commit(&shas[1], &[&a]).is_err(),
        "b's commit verified with a"
    );
    ensure!(
        !env.has_signature(&shas[2])?,
        "the unsigned job's commit carries a signature"
    );
    // a's two jobs share one push: their commits follow each other.
    ensure!(env.git(&["rev-parse", &format!("{}^", shas[3])])?.trim() == shas[0]);
    Ok(())
}
