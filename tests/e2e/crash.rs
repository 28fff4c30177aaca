//! Crash safety of Pull (design §8): the operator binary is SIGKILLed inside every step of a
//! replace and of a first import (the emulator holds the step's request, so the kill lands
//! while ToolJet is doing it; the emulator finishes the work as a real server would), then
//! restarted. After every round the target must hold exactly one app of the name and slug
//! users know, with the new definition, no temporary or parked app, and the AppSync Ready
//! with its journal closed.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::Value;
use tooljet_gitsync_operator::api::{AppSync, SwapStep};
use tooljet_gitsync_testkit::emulator::{AppRec, Emulator, EmulatorConfig, Fault};
use tooljet_gitsync_testkit::gitserver::GitServer;
use tooljet_gitsync_testkit::proc::free_port;

use crate::pull::prod_config_in;
use crate::support::{
    apply, aps_has, namespace, seed_tooljet_repo, trial, wait_aps, Env, FixtureFile, SHARD_LABEL,
};

pub fn trials() -> Vec<libtest_mimic::Trial> {
    vec![
        trial("crash_pull_killed_inside_every_swap_step", crash_rounds),
        trial(
            "crash_pull_request_mode_killed_after_each_push",
            crash_pull_request_rounds,
        ),
    ]
}

/// The operator binary for objects labelled `e2e-shard: crash`, without leader election so a
/// restart is immediate. Killed when dropped, so no process outlives the trial.
struct Operator {
    child: Option<Child>,
    data: Option<tempfile::TempDir>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Operator {
    fn start(env: &Env, data: Option<tempfile::TempDir>) -> Result<Operator> {
        Self::start_shard(env, data, "crash")
    }

    /// The same for objects labelled `e2e-shard: <shard>`: trials that kill their operator
    /// each have a shard of their own, so one's restarts never act on the other's objects.
    fn start_shard(env: &Env, data: Option<tempfile::TempDir>, shard: &str) -> Result<Operator> {
        let data = match data {
            Some(d) => d,
            None => tempfile::Builder::new()
                .prefix("crash-op-")
                .tempdir_in("/tmp")?,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.path().join("operator.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_tooljet-gitsync-operator"))
            .arg("run")
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{}", free_port()?))
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .arg("--label-selector")
            .arg(format!("{SHARD_LABEL}={shard}"))
            .env("KUBECONFIG", &env.kube.kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Operator {
            child: Some(child),
            data: Some(data),
        })
    }

    /// SIGKILL: no shutdown, no cleanup, mid-call; returns the data dir for the restart (the
    /// mirrors survive a pod restart when on a volume; nothing depends on it).
    fn kill9(mut self) -> Result<tempfile::TempDir> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.data.take().context("operator without data dir")
    }
}

fn pull_appsync(name: &str, app: &str) -> String {
    format!(
        "apiVersion: gitsync.tooljet.io/v1alpha1\nkind: AppSync\nmetadata:\n  name: {name}\n  labels: {{ {SHARD_LABEL}: crash }}\nspec:\n  gitSyncConfigRef: {{ name: sales }}\n  app: {app:?}\n  direction: Pull\n  pull: {{ updatePolicy: Auto }}\n"
    )
}

/// Commits a new definition of `path` (a marker `round` in its first component).
fn commit_round(git: &GitServer, files: &[FixtureFile], path: &str, round: u64) -> Result<String> {
    let (_, bytes) = files
        .iter()
        .find(|(p, _)| *p == path)
        .context("fixture file")?;
    let mut export: Value = serde_json::from_slice(bytes)?;
    export["app"][0]["definition"]["appV2"]["components"][0]["properties"]["round"] =
        serde_json::json!({ "value": round });
    let body = serde_json::to_vec_pretty(&export)?;
    git.commit_files("apps", "main", &[(path, &body)], &format!("round {round}"))
}

fn marker(app: &AppRec) -> Option<u64> {
    app.content["components"][0]["properties"]["round"]["value"].as_u64()
}

/// Requests matching `method` and the path pattern (`*` = one segment) seen so far.
fn arrived(prod: &Emulator, method: &str, pattern: &str) -> usize {
    let parts: Vec<&str> = pattern.split('/').collect();
    prod.arrivals()
        .iter()
        .filter(|r| r.method == method)
        .filter(|r| {
            let got: Vec<&str> = r.path.split('/').collect();
            got.len() == parts.len() && parts.iter().zip(&got).all(|(p, g)| *p == "*" || p == g)
        })
        .count()
}

async fn poke(env: &Env, ns: &str, name: &str) -> Result<()> {
    let api: Api<AppSync> = Api::namespaced(env.client.clone(), ns);
    let patch = serde_json::json!({"metadata": {"annotations": {"e2e/poke": format!("{:?}", Instant::now())}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Exactly one app of `name` (with `slug`, when given) in the workspace, holding `round`, and
/// no temporary or parked app.
fn invariant(
    prod: &Emulator,
    ws: &str,
    name: &str,
    slug: Option<&str>,
    round: Option<u64>,
) -> Result<AppRec> {
    let apps = prod.apps_in(ws);
    let leftovers: Vec<&str> = apps
        .iter()
        .filter(|a| a.name.starts_with("__gitsync_"))
        .map(|a| a.name.as_str())
        .collect();
    ensure!(
        leftovers.is_empty(),
        "temporary or parked apps left: {leftovers:?}"
    );
    let named: Vec<&AppRec> = apps.iter().filter(|a| a.name == name).collect();
    ensure!(named.len() == 1, "{} apps named {name:?}", named.len());
    if let Some(s) = slug {
        ensure!(
            named[0].slug == s,
            "slug changed: {} -> {}",
            s,
            named[0].slug
        );
    }
    if let Some(r) = round {
        ensure!(
            marker(named[0]) == Some(r),
            "app holds round {:?}, want {r}",
            marker(named[0])
        );
    }
    Ok(named[0].clone())
}

/// Waits until the AppSync is Ready at `sha` with its journal closed and the invariant holds.
#[allow(clippy::too_many_arguments)] // one call per scenario, each argument named at the call
async fn settled(
    env: &Env,
    prod: &Emulator,
    ns: &str,
    aps: &str,
    ws: &str,
    name: &str,
    slug: Option<&str>,
    sha: &str,
    round: Option<u64>,
) -> Result<AppRec> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    while Instant::now() < deadline {
        let api: Api<AppSync> = Api::namespaced(env.client.clone(), ns);
        let a = api.get(aps).await?;
        let st = a.status.clone().unwrap_or_default();
        let ready =
            aps_has(&a, "Ready", "True", "Pulled") || aps_has(&a, "Ready", "True", "UpToDate");
        let at = st.last_commit.as_ref().is_some_and(|c| c.sha == sha);
        if ready && at && st.swap.is_none() {
            match invariant(prod, ws, name, slug, round) {
                Ok(app) => {
                    ensure!(
                        st.app.as_ref().and_then(|x| x.id.as_deref()) == Some(app.id.as_str()),
                        "status.app.id is the surviving app"
                    );
                    return Ok(app);
                }
                Err(e) => last = format!("{e:#}"),
            }
        } else {
            let ready_c = st
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| format!("{} {}: {}", c.status, c.reason, c.message));
            last = format!(
                "ready={ready_c:?} at={at} swap={:?}",
                st.swap.as_ref().map(|j| j.step)
            );
        }
        poke(env, ns, aps).await?;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    bail!("{aps} did not settle: {last}")
}

/// The journal step recorded in the AppSync's status.
async fn journal_step(env: &Env, ns: &str, name: &str) -> Result<Option<SwapStep>> {
    let api: Api<AppSync> = Api::namespaced(env.client.clone(), ns);
    Ok(api
        .get(name)
        .await?
        .status
        .and_then(|s| s.swap)
        .map(|j| j.step))
}

/// One kill: inject a slow step, wait until the operator is inside it, SIGKILL, let ToolJet
/// finish. Returns the data dir for the restart.
async fn kill_inside(
    prod: &Emulator,
    op: Operator,
    method: &str,
    pattern: &str,
    skip: u32,
) -> Result<tempfile::TempDir> {
    let seen = arrived(prod, method, pattern);
    let hold = Duration::from_secs(2);
    prod.inject(Fault {
        skip,
        ..Fault::delay(method, pattern, hold)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrived(prod, method, pattern) <= seen + skip as usize {
        if Instant::now() > deadline {
            bail!("the operator never reached {method} {pattern} (skip {skip})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let data = op.kill9()?;
    prod.clear_faults();
    tokio::time::sleep(hold + Duration::from_millis(500)).await;
    Ok(data)
}

async fn crash_rounds(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    let (seed, files) = seed_tooljet_repo(&git)?;
    let prod = Emulator::start(EmulatorConfig::default()).await?;
    let ws_of = |slug: &str| {
        prod.workspaces()
            .into_iter()
            .find(|w| w.slug == slug)
            .map(|w| w.id)
    };
    let main_ws = ws_of("my-workspace").context("workspace")?;
    let staging_ws = ws_of("staging").context("workspace")?;

    // Replace rounds: one app pulled into my-workspace, replaced once per step.
    let ns = namespace(c, "crash-replace").await?;
    prod_config_in(&env, &ns, &git, &url, &prod, "my-workspace").await?;
    let mut op = Operator::start(&env, None)?;
    apply::<AppSync>(c, &ns, &pull_appsync("crash", "Sales Dashboard")).await?;
    wait_aps(c, &ns, "crash", "first import", |a| {
        aps_has(a, "Ready", "True", "Pulled")
    })
    .await?;
    let first = settled(
        &env,
        &prod,
        &ns,
        "crash",
        &main_ws,
        "Sales Dashboard",
        None,
        &seed,
        None,
    )
    .await?;
    let slug = first.slug.clone();
    // (step, request held, skip, journal step on record when killed)
    let steps: [(&str, &str, &str, u32, SwapStep); 5] = [
        (
            "import",
            "POST",
            "/api/v2/resources/import",
            0,
            SwapStep::Importing,
        ),
        ("park", "PUT", "/api/apps/*", 0, SwapStep::Imported),
        ("promote", "PUT", "/api/apps/*", 1, SwapStep::Parked),
        ("delete old", "DELETE", "/api/apps/*", 0, SwapStep::Promoted),
        (
            "read-only",
            "PUT",
            "/api/app-git/*/configs",
            0,
            SwapStep::Promoted,
        ),
    ];
    let mut survived = 0;
    for (round, (step, method, pattern, skip, on_record)) in steps.iter().enumerate() {
        let round = round as u64 + 1;
        let sha = commit_round(&git, &files, "Sales Dashboard/v3.json", round)?;
        poke(&env, &ns, "crash").await?;
        let data = kill_inside(&prod, op, method, pattern, *skip)
            .await
            .with_context(|| format!("replace, killed in {step}"))?;
        // The kill landed inside the step: the journal it left is the one the restart resumes.
        let recorded = journal_step(&env, &ns, "crash").await?;
        ensure!(
            recorded == Some(*on_record),
            "killed in {step}: journal at {recorded:?}, want {on_record:?}"
        );
        op = Operator::start(&env, Some(data))?;
        settled(
            &env,
            &prod,
            &ns,
            "crash",
            &main_ws,
            "Sales Dashboard",
            Some(&slug),
            &sha,
            Some(round),
        )
        .await
        .with_context(|| format!("replace, killed in {step}"))?;
        survived += 1;
    }

    // First imports into staging, killed while importing and while taking the name.
    let ns2 = namespace(c, "crash-first").await?;
    prod_config_in(&env, &ns2, &git, &url, &prod, "staging").await?;
    let head = git.git("apps", &["rev-parse", "main"])?.trim().to_string();
    for (name, app, method, pattern) in [
        (
            "first-import",
            "Inventory",
            "POST",
            "/api/v2/resources/import",
        ),
        ("first-promote", "Sales Dashboard", "PUT", "/api/apps/*"),
    ] {
        let seen = arrived(&prod, method, pattern);
        prod.inject(Fault::delay(method, pattern, Duration::from_secs(2)));
        apply::<AppSync>(c, &ns2, &pull_appsync(name, app)).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while arrived(&prod, method, pattern) <= seen {
            ensure!(
                Instant::now() < deadline,
                "{name}: the operator never reached {method} {pattern}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let data = op.kill9()?;
        prod.clear_faults();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let recorded = journal_step(&env, &ns2, name).await?;
        ensure!(
            recorded.is_some(),
            "{name}: killed with no journal on record"
        );
        op = Operator::start(&env, Some(data))?;
        let touched = git
            .git("apps", &["log", "-1", "--format=%H", "main", "--", app])?
            .trim()
            .to_string();
        let sha = if touched.is_empty() {
            head.clone()
        } else {
            touched
        };
        settled(&env, &prod, &ns2, name, &staging_ws, app, None, &sha, None)
            .await
            .with_context(|| name.to_string())?;
        survived += 1;
    }
    drop(op);
    eprintln!("crash: {survived} rounds survived (5 replace steps, 2 first-import steps), invariant held after each");
    Ok(())
}

/// Pull-request mode with the operator binary SIGKILLed right after each push lands (before
/// or while it finds or opens the request), then restarted; every round's request is merged,
/// so every round has to open a new one. After each round: exactly one open request, for the
/// branch status names, the edit on it, and the branch never force-pushed.
async fn crash_pull_request_rounds(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "crash-pr").await?;
    let w = crate::https::pr_world(&env, &ns, "acme/crash").await?;
    w.git
        .git("acme/crash", &["config", "core.logAllRefUpdates", "always"])?;
    let app = env
        .tooljet
        .create_app("Crash PR App", None)
        .map_err(anyhow::Error::msg)?;
    let mut op = Operator::start_shard(&env, None, "crash-pr")?;
    let manifest = format!(
        "apiVersion: gitsync.tooljet.io/v1alpha1\nkind: AppSync\nmetadata:\n  name: web\n  labels: {{ {SHARD_LABEL}: crash-pr }}\nspec:\n  gitSyncConfigRef: {{ name: sales }}\n  app: \"Crash PR App\"\n  direction: Push\n  push:\n    pullRequest: {{ provider: github }}\n"
    );
    apply::<AppSync>(c, &ns, &manifest).await?;
    let pushes = |git: &tooljet_gitsync_testkit::httpgit::HttpGitServer| {
        git.requests()
            .iter()
            .filter(|r| r.is_push() && r.method == "POST" && r.status == 200)
            .count()
    };
    let mut kills = 0;
    // Kills that landed after the push and before the round's request existed.
    let mut before_request = 0;
    const ROUNDS: u64 = 5;
    for round in 1..=ROUNDS {
        let before = pushes(&w.git);
        if round > 1 {
            env.tooljet
                .edit_app(&app.id, |d| {
                    d["components"][0]["properties"]["crashRound"] =
                        serde_json::json!({ "value": round });
                })
                .map_err(anyhow::Error::msg)?;
            poke(&env, &ns, "web").await?;
        }
        // Kill the moment the push has landed.
        let deadline = Instant::now() + Duration::from_secs(60);
        while pushes(&w.git) == before {
            ensure!(Instant::now() < deadline, "round {round}: no push");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let data = op.kill9()?;
        kills += 1;
        let open_at_kill = w
            .github
            .prs("acme/crash")
            .iter()
            .filter(|p| format!("{:?}", p.state) == "Open")
            .count();
        if open_at_kill == 0 {
            before_request += 1;
        }
        op = Operator::start_shard(&env, Some(data), "crash-pr")?;
        poke(&env, &ns, "web").await?;
        let a = wait_aps(c, &ns, "web", "the round's request open", |a| {
            aps_has(a, "Ready", "True", "PullRequestOpen")
                && crate::https::pr_of(a).is_some_and(|p| p.state == "Open")
        })
        .await?;
        let pr = crate::https::pr_of(&a).context("status.pullRequest")?;
        let open: Vec<_> = w
            .github
            .prs("acme/crash")
            .into_iter()
            .filter(|p| format!("{:?}", p.state) == "Open")
            .collect();
        ensure!(
            open.len() == 1 && open[0].number == pr.number && open[0].head == pr.branch,
            "round {round}: one open request, the one status names: {open:?} vs {pr:?}"
        );
        if round > 1 {
            let file = w.git.git(
                "acme/crash",
                &["show", &format!("{}:Crash PR App/v1.json", pr.branch)],
            )?;
            ensure!(
                file.contains("crashRound"),
                "round {round}: the edit is on the branch"
            );
        }
        w.github.merge("acme/crash", pr.number)?;
        poke(&env, &ns, "web").await?;
        wait_aps(c, &ns, "web", "merged", |a| {
            crate::https::pr_of(a).is_some_and(|p| p.state == "Merged")
        })
        .await?;
    }
    let prs = w.github.prs("acme/crash");
    ensure!(
        prs.len() as u64 == ROUNDS,
        "one request per round, never a duplicate: {prs:?}"
    );
    for branch in prs.iter().map(|p| p.head.clone()) {
        let log = w.git.git(
            "acme/crash",
            &[
                "reflog",
                "show",
                "--format=%gs",
                &format!("refs/heads/{branch}"),
            ],
        )?;
        ensure!(
            !log.contains("forced-update"),
            "{branch} force-pushed: {log}"
        );
    }
    drop(op);
    eprintln!("crash-pr: {ROUNDS} rounds, {kills} kills right after a push ({before_request} before the round's request existed), {} requests, one open at a time", prs.len());
    Ok(())
}
