//! AppSync Push end to end: ToolJet (emulator) -> operator -> real sshd git server, in
//! ToolJet's own repository layout.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use serde_json::Value;
use tooljet_gitsync_operator::api::AppSync;
use tooljet_gitsync_testkit::gitserver::GitServer;

use crate::gitsyncconfig::ready_config;
use crate::support::{
    apply, appsync_manifest, aps_has, namespace, poke, trial, wait, wait_aps, wait_events, Env,
};

pub fn trials() -> Vec<libtest_mimic::Trial> {
    vec![
        trial(
            "push_lifecycle_create_update_rename_version_noop_delete",
            lifecycle,
        ),
        trial("push_suspend_writes_nothing", suspend),
        trial(
            "push_twenty_appsyncs_batched_with_foreign_writer",
            twenty_batched,
        ),
        trial("push_refusals_never_overwrite", refusals),
        trial(
            "push_into_repository_written_by_tooljet",
            tooljet_written_repo,
        ),
    ]
}

fn meta(git: &GitServer) -> Result<Value> {
    Ok(serde_json::from_str(
        &git.git("apps", &["show", "main:.meta/meta.json"])?,
    )?)
}

fn head(git: &GitServer) -> Result<String> {
    Ok(git.git("apps", &["rev-parse", "main"])?.trim().to_string())
}

fn files(git: &GitServer) -> Result<Vec<String>> {
    Ok(git
        .git("apps", &["ls-tree", "-r", "--name-only", "main"])?
        .lines()
        .map(String::from)
        .collect())
}

fn edit(env: &Env, app_id: &str, n: u64) -> Result<()> {
    env.tooljet
        .edit_app(app_id, |c| {
            c["components"][0]["properties"]["e2eEdit"] = serde_json::json!({ "value": n });
        })
        .map_err(anyhow::Error::msg)
}

async fn committed_after(
    env: &Env,
    ns: &str,
    name: &str,
    old_head: &str,
    what: &str,
) -> Result<AppSync> {
    let old = old_head.to_string();
    wait_aps(&env.client, ns, name, what, move |a| {
        aps_has(a, "Ready", "True", "Committed")
            && a.status
                .as_ref()
                .and_then(|s| s.last_commit.as_ref())
                .is_some_and(|c| c.sha != old)
    })
    .await
}

async fn lifecycle(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "push-life").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    ready_config(&env, &ns, &git, &url, "").await?;
    let app = env
        .tooljet
        .create_app("Push Demo", None)
        .map_err(anyhow::Error::msg)?;
    let extra = "  push:\n    commitMessage: Add region filter\n    author: { name: Jane Doe, email: jane@acme.io }\n";
    apply::<AppSync>(
        c,
        &ns,
        &appsync_manifest("demo", "Push Demo", "Push", extra),
    )
    .await?;

    // Creation: root commit with the bare message, ToolJet's files and meta keys.
    let a = wait_aps(c, &ns, "demo", "first commit", |a| {
        aps_has(a, "Ready", "True", "Committed")
    })
    .await?;
    let st = a.status.clone().context("status")?;
    let last = st.last_commit.clone().context("lastCommit")?;
    ensure!(last.sha == head(&git)?, "lastCommit is the branch head");
    ensure!(last.message == "App creation", "{last:?}");
    ensure!(last.author == "Jane Doe");
    let v1 = app.versions.last().context("version")?.name.clone();
    let path = format!("Push Demo/{v1}.json");
    ensure!(st.git.as_ref().and_then(|g| g.path.clone()) == Some(path.clone()));
    ensure!(st.git.as_ref().and_then(|g| g.git_app_id.clone()) == Some(app.id.clone()));
    ensure!(st.app.as_ref().and_then(|x| x.id.clone()) == Some(app.id.clone()));
    let m = meta(&git)?;
    let entry = &m[&app.id];
    let keys: Vec<&str> = entry
        .as_object()
        .context("entry")?
        .keys()
        .map(String::as_str)
        .collect();
    ensure!(
        keys == [
            "gitAppName",
            "lastCommitMessage",
            "gitVersionId",
            "lastpushDate",
            "gitVersionName",
            "lastCommitUser"
        ],
        "{keys:?}"
    );
    ensure!(
        entry["gitAppName"] == "Push Demo"
            && entry["lastCommitMessage"] == "App creation"
            && entry["lastCommitUser"] == "Jane Doe"
    );
    let raw = git.git("apps", &["show", &format!("main:{path}")])?;
    ensure!(
        raw.starts_with("{\n  \"") && !raw.ends_with('\n'),
        "2-space JSON without trailing newline"
    );
    let exported: Value = serde_json::from_str(&raw)?;
    ensure!(exported["tooljet_version"] == "3.16.0");
    wait_events(c, &ns, "demo", &["Committed"]).await?;

    // Nothing changed: no commit, no push.
    let h = head(&git)?;
    poke::<AppSync>(c, &ns, "demo").await?;
    wait_aps(c, &ns, "demo", "up to date", |a| {
        aps_has(a, "Ready", "True", "UpToDate")
    })
    .await?;
    ensure!(head(&git)? == h, "no-op made a commit");
    // Nothing changed on either side: repeated passes within the interval share one cached
    // ref check; no fetch, no push.
    let connections = || git.log().matches("Accepted publickey").count();
    poke::<AppSync>(c, &ns, "demo").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = connections();
    for _ in 0..4 {
        poke::<AppSync>(c, &ns, "demo").await?;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let a = wait_aps(c, &ns, "demo", "up to date", |a| {
        aps_has(a, "Ready", "True", "UpToDate")
    })
    .await?;
    ensure!(
        connections() <= before + 1,
        "{} SSH sessions for 4 no-op passes",
        connections() - before
    );
    ensure!(
        a.status.and_then(|s| s.git).and_then(|g| g.head) == Some(h.clone()),
        "verified head recorded"
    );

    // Content changed: a commit with the user's message, ToolJet's prefix.
    edit(&env, &app.id, 1)?;
    poke::<AppSync>(c, &ns, "demo").await?;
    let a = committed_after(&env, &ns, "demo", &h, "update commit").await?;
    let msg = a
        .status
        .and_then(|s| s.last_commit)
        .map(|c| c.message)
        .unwrap_or_default();
    ensure!(
        msg == format!("Version {v1} Of Push Demo: Add region filter"),
        "{msg}"
    );
    ensure!(meta(&git)?[&app.id]["lastCommitMessage"] == "Add region filter");

    // Renamed in ToolJet: folder moved, meta updated, spec.app (old name) followed by id.
    let h = head(&git)?;
    ensure!(env.tooljet.rename_app(&app.id, "Push Demo Renamed"));
    poke::<AppSync>(c, &ns, "demo").await?;
    let a = committed_after(&env, &ns, "demo", &h, "rename commit").await?;
    let msg = a
        .status
        .clone()
        .and_then(|s| s.last_commit)
        .map(|c| c.message)
        .unwrap_or_default();
    ensure!(
        msg == format!("Version {v1} Of Push Demo Renamed: App is renamed"),
        "{msg}"
    );
    let fs = files(&git)?;
    ensure!(
        fs.contains(&format!("Push Demo Renamed/{v1}.json"))
            && !fs.iter().any(|f| f.starts_with("Push Demo/")),
        "{fs:?}"
    );
    ensure!(meta(&git)?[&app.id]["gitAppName"] == "Push Demo Renamed");

    // New version: old file removed, new written, one commit.
    let h = head(&git)?;
    let v2 = env
        .tooljet
        .add_version(&app.id, "v2")
        .map_err(anyhow::Error::msg)?;
    poke::<AppSync>(c, &ns, "demo").await?;
    committed_after(&env, &ns, "demo", &h, "version commit").await?;
    let fs = files(&git)?;
    ensure!(
        fs.contains(&"Push Demo Renamed/v2.json".to_string())
            && !fs.contains(&format!("Push Demo Renamed/{v1}.json")),
        "{fs:?}"
    );
    ensure!(meta(&git)?[&app.id]["gitVersionId"] == v2.id.as_str());
    let commits = git.git("apps", &["rev-list", "--count", &format!("{h}..main")])?;
    ensure!(commits.trim() == "1", "version change is one commit");

    // App deleted in ToolJet: nothing deleted in git, the AppSync says so.
    let h = head(&git)?;
    ensure!(env.tooljet.delete_app(&app.id));
    poke::<AppSync>(c, &ns, "demo").await?;
    let a = wait_aps(c, &ns, "demo", "AppNotFound", |a| {
        aps_has(a, "Ready", "False", "AppNotFound")
    })
    .await?;
    let msg = a
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message)
        .unwrap_or_default();
    ensure!(msg.contains("nothing in git was deleted"), "{msg}");
    ensure!(head(&git)? == h);

    // AppSync deleted: git untouched.
    Api::<AppSync>::namespaced(c.clone(), &ns)
        .delete("demo", &DeleteParams::default())
        .await?;
    wait(Duration::from_secs(30), || {
        let api = Api::<AppSync>::namespaced(c.clone(), &ns);
        async move { api.get_opt("demo").await.ok()?.is_none().then_some(()) }
    })
    .await?;
    ensure!(head(&git)? == h && files(&git)?.contains(&"Push Demo Renamed/v2.json".to_string()));
    Ok(())
}

async fn suspend(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "push-suspend").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    ready_config(&env, &ns, &git, &url, "").await?;
    env.tooljet
        .create_app("Suspended App", None)
        .map_err(anyhow::Error::msg)?;
    apply::<AppSync>(
        c,
        &ns,
        &appsync_manifest("s", "Suspended App", "Push", "  suspend: true\n"),
    )
    .await?;
    wait_aps(c, &ns, "s", "Suspended", |a| {
        aps_has(a, "Ready", "False", "Suspended")
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        git.git("apps", &["for-each-ref"])?.trim().is_empty(),
        "suspended AppSync wrote to git"
    );
    // Resuming pushes.
    let api: Api<AppSync> = Api::namespaced(c.clone(), &ns);
    api.patch(
        "s",
        &PatchParams::apply("e2e-user").force(),
        &Patch::Apply(serde_yaml::from_str::<Value>(&appsync_manifest(
            "s",
            "Suspended App",
            "Push",
            "  suspend: false\n",
        ))?),
    )
    .await?;
    wait_aps(c, &ns, "s", "Committed", |a| {
        aps_has(a, "Ready", "True", "Committed")
    })
    .await?;
    Ok(())
}

async fn twenty_batched(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "push-twenty").await?;
    let git = Arc::new(GitServer::start()?);
    let url = git.create_repo("apps")?;
    git.git("apps", &["config", "core.logAllRefUpdates", "always"])?;
    ready_config(&env, &ns, &git, &url, "").await?;
    // A foreign writer keeps pushing other files to the same branch meanwhile.
    git.commit_files("apps", "main", &[("README.md", b"foreign 0")], "foreign 0")?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (g2, s2) = (git.clone(), stop.clone());
    let foreign = std::thread::spawn(move || {
        let mut shas = Vec::new();
        for i in 1..40 {
            if s2.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            if let Ok(sha) = g2.commit_files(
                "apps",
                "main",
                &[("README.md", format!("foreign {i}").as_bytes())],
                &format!("foreign {i}"),
            ) {
                shas.push(sha);
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        shas
    });
    let mut ids = Vec::new();
    for i in 0..20 {
        let app = env
            .tooljet
            .create_app(&format!("Batch App {i:02}"), None)
            .map_err(anyhow::Error::msg)?;
        ids.push(app.id);
    }
    for i in 0..20 {
        apply::<AppSync>(
            c,
            &ns,
            &appsync_manifest(
                &format!("batch-{i:02}"),
                &format!("Batch App {i:02}"),
                "Push",
                "",
            ),
        )
        .await?;
    }
    // Each app is committed by the operator; a later pass (the branch moved) may already have
    // turned Committed into UpToDate by the time this loop reads it, keeping lastCommit.
    for i in 0..20 {
        wait_aps(c, &ns, &format!("batch-{i:02}"), "committed", |a| {
            aps_has(a, "Ready", "True", "Committed")
                || (aps_has(a, "Ready", "True", "UpToDate")
                    && a.status.as_ref().is_some_and(|s| s.last_commit.is_some()))
        })
        .await?;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let foreign_shas = foreign
        .join()
        .map_err(|_| anyhow::anyhow!("foreign writer panicked"))?;
    ensure!(!foreign_shas.is_empty());
    // Nothing lost: every foreign commit is in the branch's history, every app is present.
    for sha in &foreign_shas {
        git.git("apps", &["merge-base", "--is-ancestor", sha, "main"])
            .with_context(|| format!("foreign commit {sha} lost"))?;
    }
    let m = meta(&git)?;
    for id in &ids {
        ensure!(m.get(id).is_some(), "app {id} missing from meta.json");
    }
    let fs = files(&git)?;
    ensure!((0..20).all(|i| fs
        .iter()
        .any(|f| f.starts_with(&format!("Batch App {i:02}/")))));
    // Batched: fewer ref updates by the operator than apps (the reflog counts every update).
    let log = git.git(
        "apps",
        &["reflog", "show", "--format=%s", "refs/heads/main"],
    )?;
    let updates = log.lines().count();
    let operator_updates = updates.saturating_sub(foreign_shas.len() + 1);
    ensure!(
        operator_updates < 20,
        "{operator_updates} pushes for 20 apps: not batched"
    );
    // Never a force push: the reflog of a bare repo shows forced updates as such.
    ensure!(!log.contains("forced-update"), "{log}");

    // The branch moved under most of them (later batches, the foreign writer), but nothing
    // touched their apps: a new pass pushes nothing and records the current head.
    let final_head = head(&git)?;
    for i in 0..20 {
        poke::<AppSync>(c, &ns, &format!("batch-{i:02}")).await?;
    }
    for i in 0..20 {
        let h = final_head.clone();
        wait_aps(
            c,
            &ns,
            &format!("batch-{i:02}"),
            "up to date at the moved head",
            move |a| {
                aps_has(a, "Ready", "True", "UpToDate")
                    && a.status
                        .as_ref()
                        .and_then(|s| s.git.as_ref())
                        .and_then(|g| g.head.as_deref())
                        == Some(h.as_str())
            },
        )
        .await?;
    }
    let after = git.git(
        "apps",
        &["reflog", "show", "--format=%s", "refs/heads/main"],
    )?;
    ensure!(
        after.lines().count() == updates,
        "a pass with nothing to change pushed"
    );
    Ok(())
}

async fn refusals(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "push-refuse").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    ready_config(&env, &ns, &git, &url, "").await?;
    env.tooljet
        .create_app(".hidden", None)
        .map_err(anyhow::Error::msg)?;
    env.tooljet
        .create_app("Clash", None)
        .map_err(anyhow::Error::msg)?;
    env.tooljet
        .create_app("clash", None)
        .map_err(anyhow::Error::msg)?;
    apply::<AppSync>(c, &ns, &appsync_manifest("hidden", ".hidden", "Push", "")).await?;
    apply::<AppSync>(
        c,
        &ns,
        &appsync_manifest("clash-upper", "Clash", "Push", ""),
    )
    .await?;
    wait_aps(c, &ns, "hidden", "AppNameRefused", |a| {
        aps_has(a, "Ready", "False", "AppNameRefused")
    })
    .await?;
    wait_aps(c, &ns, "clash-upper", "Committed", |a| {
        aps_has(a, "Ready", "True", "Committed")
    })
    .await?;
    let before = files(&git)?;
    apply::<AppSync>(
        c,
        &ns,
        &appsync_manifest("clash-lower", "clash", "Push", ""),
    )
    .await?;
    let a = wait_aps(c, &ns, "clash-lower", "FolderCollision", |a| {
        aps_has(a, "Ready", "False", "FolderCollision")
    })
    .await?;
    ensure!(aps_has(&a, "Stalled", "True", "FolderCollision"));
    ensure!(files(&git)? == before, "a refused push changed git");
    ensure!(!files(&git)?.iter().any(|f| f.starts_with(".hidden")));
    // A missing GitSyncConfig and a cross-namespace reference get their own reasons.
    apply::<AppSync>(
        c,
        &ns,
        &appsync_manifest("nocfg", "Clash", "Push", "").replace("name: sales", "name: nope"),
    )
    .await?;
    wait_aps(c, &ns, "nocfg", "GitSyncConfigNotFound", |a| {
        aps_has(a, "Ready", "False", "GitSyncConfigNotFound")
    })
    .await?;
    apply::<AppSync>(
        c,
        &ns,
        &appsync_manifest("cross", "Clash", "Push", "")
            .replace("{ name: sales }", "{ name: sales, namespace: elsewhere }"),
    )
    .await?;
    wait_aps(c, &ns, "cross", "CrossNamespaceRefDenied", |a| {
        aps_has(a, "Ready", "False", "CrossNamespaceRefDenied")
    })
    .await?;
    apply::<AppSync>(
        c,
        &ns,
        &appsync_manifest("noapp", "No Such App", "Push", ""),
    )
    .await?;
    wait_aps(c, &ns, "noapp", "AppNotFound", |a| {
        aps_has(a, "Ready", "False", "AppNotFound")
    })
    .await?;
    Ok(())
}

async fn tooljet_written_repo(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "push-interop").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    // The repository as ToolJet's own GitSync left it (fixture from the reference layout).
    let (_, fixture) = crate::support::seed_tooljet_repo(&git)?;
    ready_config(&env, &ns, &git, &url, "").await?;
    let app = env
        .tooljet
        .create_app("Interop New", None)
        .map_err(anyhow::Error::msg)?;
    apply::<AppSync>(
        c,
        &ns,
        &appsync_manifest("interop", "Interop New", "Push", ""),
    )
    .await?;
    wait_aps(c, &ns, "interop", "Committed", |a| {
        aps_has(a, "Ready", "True", "Committed")
    })
    .await?;
    // Other apps' files are byte for byte what ToolJet wrote; their meta entries too.
    for (rel, bytes) in &fixture[1..] {
        let now = git.git("apps", &["show", &format!("main:{rel}")])?;
        ensure!(now.as_bytes() == bytes.as_slice(), "{rel} changed");
    }
    let meta_now = git.git("apps", &["show", "main:.meta/meta.json"])?;
    let old = String::from_utf8(fixture[0].1.clone())?;
    let old_inner = old.trim_end().trim_end_matches('}').trim_end();
    ensure!(
        meta_now.starts_with(old_inner),
        "existing meta entries were rewritten:\n{meta_now}"
    );
    let m: Value = serde_json::from_str(&meta_now)?;
    ensure!(m[&app.id]["gitAppName"] == "Interop New");
    ensure!(m.as_object().map(|o| o.len()) == Some(3));
    // Non-root commit: ToolJet's "Version … Of …:" prefix around "App creation".
    let subject = git.git("apps", &["log", "-1", "--format=%s", "main"])?;
    ensure!(
        subject.trim().ends_with("Of Interop New: App creation"),
        "{subject}"
    );
    Ok(())
}
