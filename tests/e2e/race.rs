//! Foreign pushers racing the operator while it is SIGKILLed and restarted (issue 10): a
//! foreign writer commits to the branch every ~300 ms for the whole trial while six Push
//! AppSyncs of the operator BINARY push edits made in ToolJet, and the binary is killed and
//! restarted once per round. Afterwards git must hold every foreign commit (no foreign commit
//! lost), every app with its last edit (no app lost, no update lost), no empty commit, no
//! change committed twice, and a history that only ever moved forward (never force-pushed).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use kube::Api;
use serde_json::Value;
use tooljet_gitsync_operator::api::AppSync;
use tooljet_gitsync_testkit::gitserver::GitServer;
use tooljet_gitsync_testkit::proc::free_port;

use crate::gitsyncconfig::{manifest, ready_config_with};
use crate::support::{apply, aps_has, namespace, poke, trial, Env, SHARD_LABEL};

pub fn trials() -> Vec<libtest_mimic::Trial> {
    vec![trial(
        "race_foreign_pushers_while_the_operator_is_killed",
        race,
    )]
}

/// Apps (and Push AppSyncs) racing the foreign writer.
const APPS: usize = 6;
/// When each round's SIGKILL lands: a fixed, irregular sequence of delays in 200–1500 ms
/// after the operator started exporting the round's edits (different points of a pass:
/// fetching, committing, pushing, retrying a rejected push, writing status), and kills as
/// soon as one of its pushes is in git.
const KILLS: [Kill; 8] = [
    Kill::After(1100),
    Kill::OnPush,
    Kill::After(300),
    Kill::After(1500),
    Kill::OnPush,
    Kill::After(650),
    Kill::After(200),
    Kill::OnPush,
];

#[derive(Debug)]
enum Kill {
    /// This many ms after the operator's first export of the round.
    After(u64),
    /// As soon as a commit of the operator's lands in git during this round.
    OnPush,
}

/// Pause of the foreign writer between its commits.
const FOREIGN_EVERY: Duration = Duration::from_millis(300);
/// Author of the foreign writer's commits (`GitServer::commit_files`).
const FOREIGN_AUTHOR: &str = "Foreign Writer";
/// Author of the operator's commits (no author configured: the default).
const OPERATOR_AUTHOR: &str = "ToolJet GitSync";
/// The property the rounds set in the app's first component.
const MARKER: &str = "raceRound";

/// The operator binary for objects labelled `e2e-shard: race` in one namespace, without
/// leader election so a restart is immediate. Killed when dropped.
struct Operator {
    child: Child,
}

impl Operator {
    fn start(env: &Env, ns: &str, data: &Path) -> Result<Operator> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("operator.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_tooljet-gitsync-operator"))
            .arg("run")
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{}", free_port()?))
            .arg("--data-dir")
            .arg(data.join("data"))
            .arg("--label-selector")
            .arg(format!("{SHARD_LABEL}=race"))
            .arg("--watch-namespace")
            .arg(ns)
            .env("KUBECONFIG", &env.kube.kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Operator { child })
    }

    /// Whether it exited on its own.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL: no shutdown, no cleanup, mid-call. The data dir (mirror) is kept for the
    /// restart, as a volume would keep it.
    fn kill9(self) {
        drop(self);
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the foreign writer did.
#[derive(Default)]
struct ForeignLog {
    /// Every commit it pushed, oldest first.
    shas: Vec<String>,
    /// The branch head read right after each of its pushes (often an operator commit).
    heads: Vec<String>,
    /// Pushes that failed (the branch moved under it) and were retried with a new commit.
    retries: u32,
    /// Commits it gave up on.
    gave_up: Vec<String>,
}

/// A thread committing `foreign/<n>.txt` (unique content per attempt, so never an empty
/// commit even when a failed attempt had in fact landed) until stopped.
struct Foreign {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<ForeignLog>>,
}

impl Foreign {
    fn start(git: Arc<GitServer>) -> Foreign {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut log = ForeignLog::default();
            let mut n = 0u32;
            while !flag.load(Ordering::Relaxed) {
                n += 1;
                let path = format!("foreign/{n:04}.txt");
                for attempt in 1.. {
                    let body = format!("foreign commit {n}, attempt {attempt}\n");
                    let files: [(&str, &[u8]); 1] = [(path.as_str(), body.as_bytes())];
                    match git.commit_files("apps", "main", &files, &format!("foreign {n}")) {
                        Ok(sha) => {
                            log.shas.push(sha);
                            break;
                        }
                        // `commit_files` does not retry: a push racing the operator's is
                        // rejected (non-fast-forward, ref lock); commit again on the new head.
                        Err(e) if attempt < 40 => {
                            log.retries += 1;
                            note_retry(&e);
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(e) => {
                            log.gave_up.push(format!("{path}: {e:#}"));
                            break;
                        }
                    }
                }
                if let Ok(h) = git.git("apps", &["rev-parse", "main"]) {
                    log.heads.push(h.trim().to_string());
                }
                std::thread::sleep(FOREIGN_EVERY);
            }
            log
        });
        Foreign {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Result<ForeignLog> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .context("foreign writer already stopped")?
            .join()
            .map_err(|_| anyhow!("foreign writer panicked"))
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Only a handful of rejections are expected to be worth a look when the trial fails.
fn note_retry(e: &anyhow::Error) {
    if std::env::var_os("E2E_RACE_VERBOSE").is_some() {
        eprintln!("race: foreign push retried: {e:#}");
    }
}

/// One racing app.
struct RaceApp {
    aps: String,
    name: String,
    id: String,
    /// Its version file, `<name>/<version>.json`.
    path: String,
}

fn appsync(name: &str, app: &str) -> String {
    format!(
        "apiVersion: gitsync.tooljet.io/v1alpha1\nkind: AppSync\nmetadata:\n  name: {name}\n  labels: {{ {SHARD_LABEL}: race }}\nspec:\n  gitSyncConfigRef: {{ name: sales }}\n  app: {app:?}\n  direction: Push\n"
    )
}

fn head(git: &GitServer) -> Result<String> {
    Ok(git.git("apps", &["rev-parse", "main"])?.trim().to_string())
}

fn is_ancestor(git: &GitServer, sha: &str, of: &str) -> bool {
    git.git("apps", &["merge-base", "--is-ancestor", sha, of])
        .is_ok()
}

/// Every value of a `MARKER` property anywhere in an exported app file.
fn markers(v: &Value, out: &mut Vec<u64>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == MARKER {
                    if let Some(n) = x["value"].as_u64() {
                        out.push(n);
                    }
                } else {
                    markers(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| markers(x, out)),
        _ => {}
    }
}

/// The round marker of the app file `path` at `rev` (0 = never edited); an error when the
/// file is missing or holds more than one marker.
fn marker_at(git: &GitServer, rev: &str, path: &str) -> Result<u64> {
    let raw = git
        .git("apps", &["show", &format!("{rev}:{path}")])
        .with_context(|| format!("{path} at {rev}"))?;
    let v: Value = serde_json::from_str(&raw).with_context(|| format!("{path} at {rev}"))?;
    let mut found = Vec::new();
    markers(&v, &mut found);
    ensure!(found.len() <= 1, "{path} at {rev} holds markers {found:?}");
    Ok(found.first().copied().unwrap_or(0))
}

/// A commit of the branch: sha, parents, author and the files it changed.
struct CommitRec {
    sha: String,
    parents: Vec<String>,
    author: String,
    files: Vec<String>,
}

/// The branch's history, oldest first, with the files each commit changed (the root's too).
fn history(git: &GitServer) -> Result<Vec<CommitRec>> {
    let out = git.git(
        "apps",
        &[
            "log",
            "--reverse",
            "--no-renames",
            "--format=%x01%H%x02%P%x02%an",
            "--name-only",
            "main",
        ],
    )?;
    let mut commits = Vec::new();
    for chunk in out.split('\u{1}').filter(|c| !c.trim().is_empty()) {
        let mut lines = chunk.lines();
        let header = lines.next().unwrap_or_default();
        let mut parts = header.split('\u{2}');
        let sha = parts.next().unwrap_or_default().to_string();
        let parents = parts
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect();
        let author = parts.next().unwrap_or_default().to_string();
        let files = lines
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        commits.push(CommitRec {
            sha,
            parents,
            author,
            files,
        });
    }
    ensure!(!commits.is_empty(), "empty history");
    Ok(commits)
}

/// The last `n` lines of a file, for failure messages.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Requests of ToolJet exports (or any other call naming them) of the racing apps so far.
fn exports_of(env: &Env, ids: &[&str]) -> usize {
    env.tooljet
        .arrivals()
        .iter()
        .filter(|r| ids.iter().any(|id| r.path.contains(id)))
        .count()
}

/// Commits by the operator on the branch.
fn operator_shas(git: &GitServer) -> Result<Vec<String>> {
    Ok(git
        .git(
            "apps",
            &[
                "log",
                "--format=%H",
                &format!("--author=^{OPERATOR_AUTHOR} <"),
                "main",
            ],
        )?
        .lines()
        .map(String::from)
        .collect())
}

fn count_lines(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

async fn race(env: Arc<Env>) -> Result<()> {
    let data = tempfile::Builder::new()
        .prefix("race-op-")
        .tempdir_in("/tmp")?;
    let result = race_rounds(&env, data.path()).await;
    if result.is_err() || std::env::var_os("E2E_RACE_VERBOSE").is_some() {
        eprintln!(
            "race: last lines of the operator's log:\n{}",
            tail(&data.path().join("operator.log"), 400)
        );
    }
    result
}

async fn race_rounds(env: &Env, data: &Path) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "race-kill").await?;
    let git = Arc::new(GitServer::start()?);
    let url = git.create_repo("apps")?;
    // A bare repository keeps no reflog by default: every update of the branch is checked.
    git.git("apps", &["config", "core.logAllRefUpdates", "always"])?;
    let seed = git.commit_files(
        "apps",
        "main",
        &[("foreign/0000.txt", b"seed\n")],
        "foreign 0",
    )?;
    let m = manifest("sales", &url, "", "").replace("interval: 1m", "interval: 10s");
    ready_config_with(env, &ns, &git, &m).await?;

    let mut apps = Vec::new();
    for i in 0..APPS {
        let name = format!("Race App {i}");
        let rec = env
            .tooljet
            .create_app(&name, None)
            .map_err(anyhow::Error::msg)?;
        let version = rec.versions.last().context("version")?.name.clone();
        apps.push(RaceApp {
            aps: format!("race-{i}"),
            path: format!("{name}/{version}.json"),
            name,
            id: rec.id,
        });
    }

    let foreign = Foreign::start(git.clone());
    let log_path = data.join("operator.log");
    let mut op = Operator::start(env, &ns, data)?;
    for a in &apps {
        apply::<AppSync>(c, &ns, &appsync(&a.aps, &a.name)).await?;
    }
    let mut observed = vec![seed.clone()];
    let mut kills = 0;
    let mut landed_per_life = Vec::new();
    let mut unrecorded = 0;
    let rounds = KILLS.len() as u64;
    let ids: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
    let api: Api<AppSync> = Api::namespaced(c.clone(), &ns);
    for (i, kill) in KILLS.iter().enumerate() {
        let round = i as u64 + 1;
        let seen = exports_of(env, &ids);
        let before = operator_shas(&git)?;
        for a in &apps {
            env.tooljet
                .edit_app(&a.id, |content| {
                    content["components"][0]["properties"][MARKER] =
                        serde_json::json!({ "value": round });
                })
                .map_err(anyhow::Error::msg)?;
        }
        for a in &apps {
            poke::<AppSync>(c, &ns, &a.aps).await?;
        }
        observed.push(head(&git)?);
        let started = Instant::now();
        let alive = |op: &mut Operator| -> Result<()> {
            if let Some(st) = op.exited() {
                bail!("the operator exited by itself ({st}) in round {round}");
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "round {round}: the operator never got to {kill:?}"
            );
            Ok(())
        };
        match kill {
            // `ms` into this life's work on the round's edits (the export is its first step;
            // then the worker fetches, commits and pushes, racing the foreign writer).
            Kill::After(ms) => {
                while exports_of(env, &ids) <= seen {
                    alive(&mut op)?;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(*ms)).await;
            }
            // As soon as a push of this life is in git: between the push and the status
            // write (or right after it), the worst moment for a duplicate.
            Kill::OnPush => {
                while operator_shas(&git)?.len() <= before.len() {
                    alive(&mut op)?;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        observed.push(head(&git)?);
        alive(&mut op)?;
        op.kill9();
        kills += 1;
        observed.push(head(&git)?);
        let landed: Vec<String> = operator_shas(&git)?
            .into_iter()
            .filter(|s| !before.contains(s))
            .collect();
        if matches!(kill, Kill::OnPush) {
            // Was the kill in time to leave the pushed commits out of every status?
            let mut recorded = Vec::new();
            for a in &apps {
                if let Some(st) = api.get(&a.aps).await?.status {
                    recorded.extend(st.last_commit.map(|c| c.sha));
                }
            }
            if !landed.iter().any(|s| recorded.contains(s)) {
                unrecorded += 1;
            }
        }
        landed_per_life.push(landed.len());
        op = Operator::start(env, &ns, data)?;
    }
    let flog = foreign.finish()?;
    ensure!(
        flog.gave_up.is_empty(),
        "the foreign writer gave up: {:?}",
        flog.gave_up
    );
    ensure!(
        flog.shas.len() >= 10,
        "only {} foreign commits: no race",
        flog.shas.len()
    );

    // Settle: every AppSync Ready (Committed or UpToDate), verified at the branch head, which
    // holds the last round's edit in its file.
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut last_poke = Instant::now();
    let settled_head = loop {
        let h = head(&git)?;
        let mut pending = Vec::new();
        for a in &apps {
            let obj = api.get(&a.aps).await?;
            let ready = aps_has(&obj, "Ready", "True", "Committed")
                || aps_has(&obj, "Ready", "True", "UpToDate");
            let st = obj.status.clone().unwrap_or_default();
            let verified = st.git.as_ref().and_then(|g| g.head.clone());
            let path = st.git.as_ref().and_then(|g| g.path.clone());
            let holds = match (&verified, &path) {
                (Some(v), Some(p)) => marker_at(&git, v, p).map_err(|e| format!("{e:#}")),
                _ => Err("nothing verified yet".to_string()),
            };
            if !(ready && verified.as_deref() == Some(h.as_str()) && holds == Ok(rounds)) {
                let reason = st
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .map(|c| format!("{} {}: {}", c.status, c.reason, c.message));
                pending.push((
                    a.aps.clone(),
                    format!("ready={reason:?} verified={verified:?} holds={holds:?}"),
                ));
            }
        }
        if pending.is_empty() {
            break h;
        }
        if let Some(st) = op.exited() {
            bail!("the operator exited by itself ({st}) while settling");
        }
        if Instant::now() > deadline {
            bail!("not settled at head {h}: {pending:#?}");
        }
        if last_poke.elapsed() > Duration::from_millis(1500) {
            for (name, _) in &pending {
                poke::<AppSync>(c, &ns, name).await?;
            }
            last_poke = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    };
    ensure!(
        head(&git)? == settled_head,
        "the branch moved after the operator settled"
    );

    // 1. No foreign commit lost.
    let mut lost = Vec::new();
    for sha in std::iter::once(&seed).chain(&flog.shas) {
        if !is_ancestor(&git, sha, "main") {
            lost.push(sha.clone());
        }
    }
    ensure!(
        lost.is_empty(),
        "{} of {} foreign commits lost: {lost:?}",
        lost.len(),
        flog.shas.len() + 1
    );

    // 2. No app lost, no update lost: every folder, its file with the last round's marker,
    // every meta entry.
    let meta: Value = serde_json::from_str(&git.git("apps", &["show", "main:.meta/meta.json"])?)?;
    for a in &apps {
        let got = marker_at(&git, "main", &a.path)?;
        ensure!(
            got == rounds,
            "{} holds round {got}, want {rounds}: update lost",
            a.path
        );
        let entry = &meta[&a.id];
        ensure!(
            entry["gitAppName"] == a.name.as_str(),
            "meta.json entry of {} ({}): {entry}",
            a.name,
            a.id
        );
    }

    // 3. No empty commit, no merge: every commit changes at least one file (the root too).
    let commits = history(&git)?;
    let empty: Vec<&str> = commits
        .iter()
        .filter(|c| c.files.is_empty())
        .map(|c| c.sha.as_str())
        .collect();
    ensure!(empty.is_empty(), "empty commits: {empty:?}");
    let merges: Vec<&str> = commits
        .iter()
        .filter(|c| c.parents.len() > 1)
        .map(|c| c.sha.as_str())
        .collect();
    ensure!(merges.is_empty(), "merge commits: {merges:?}");

    // 4. No duplicate: each operator commit changes exactly one app's file (and meta.json);
    // per app, the commits changing its file carry strictly newer rounds (an update committed
    // twice, e.g. again after a kill, would repeat one).
    let mut per_app: BTreeMap<&str, Vec<(u64, &str)>> = BTreeMap::new();
    let mut operator_commits = 0;
    for commit in &commits {
        match commit.author.as_str() {
            FOREIGN_AUTHOR => ensure!(
                commit.files.iter().all(|f| f.starts_with("foreign/")),
                "foreign commit {} changed {:?}",
                commit.sha,
                commit.files
            ),
            OPERATOR_AUTHOR => {
                operator_commits += 1;
                let touched: Vec<&RaceApp> = apps
                    .iter()
                    .filter(|a| commit.files.contains(&a.path))
                    .collect();
                let others: Vec<&String> = commit
                    .files
                    .iter()
                    .filter(|f| *f != ".meta/meta.json" && !apps.iter().any(|a| a.path == **f))
                    .collect();
                ensure!(
                    touched.len() == 1 && others.is_empty(),
                    "operator commit {} changed {:?}",
                    commit.sha,
                    commit.files
                );
                let round = marker_at(&git, &commit.sha, &touched[0].path)?;
                per_app
                    .entry(touched[0].path.as_str())
                    .or_default()
                    .push((round, commit.sha.as_str()));
            }
            other => bail!("commit {} by an unknown author {other:?}", commit.sha),
        }
    }
    for (path, seq) in &per_app {
        for pair in seq.windows(2) {
            ensure!(
                pair[1].0 > pair[0].0,
                "{path}: round {} committed again by {} after {} (round {}): duplicate",
                pair[1].0,
                pair[1].1,
                pair[0].1,
                pair[0].0
            );
        }
    }
    ensure!(
        per_app.len() == APPS,
        "operator commits for {} apps",
        per_app.len()
    );

    // 5. Never force-pushed: every head seen during the run is in the final history, and every
    // update in the branch's reflog moved it forward.
    observed.extend(flog.heads.iter().cloned());
    observed.push(settled_head.clone());
    let gone: Vec<&String> = observed
        .iter()
        .filter(|h| !is_ancestor(&git, h, "main"))
        .collect();
    ensure!(gone.is_empty(), "heads rewritten away: {gone:?}");
    let reflog = std::fs::read_to_string(git.repo_path("apps").join("logs/refs/heads/main"))
        .context("reflog of main")?;
    let zero = "0".repeat(40);
    let mut updates = 0;
    let mut last_new = String::new();
    for line in reflog.lines() {
        let mut f = line.split_whitespace();
        let (old, new) = (f.next().unwrap_or_default(), f.next().unwrap_or_default());
        ensure!(
            (old == zero && updates == 0) || (old == last_new && is_ancestor(&git, old, new)),
            "non-fast-forward update of main: {line}"
        );
        updates += 1;
        last_new = new.to_string();
    }
    ensure!(
        last_new == settled_head,
        "the reflog ends at {last_new}, the branch at {settled_head}"
    );

    // lastCommit is the app's newest commit, even when the pass that pushed it was killed
    // before its status write (the next pass finds nothing to commit and reads it from git).
    let mut stale = 0;
    for a in &apps {
        let st = api.get(&a.aps).await?.status.unwrap_or_default();
        let newest = per_app
            .get(a.path.as_str())
            .and_then(|seq| seq.last())
            .map(|(_, sha)| *sha);
        if st.last_commit.as_ref().map(|c| c.sha.as_str()) != newest {
            stale += 1;
        }
        if let Some(lc) = st.last_commit {
            let ok = per_app
                .get(a.path.as_str())
                .is_some_and(|seq| seq.iter().any(|(_, sha)| *sha == lc.sha));
            ensure!(
                ok,
                "{}: lastCommit {} is not a commit of its app",
                a.aps,
                lc.sha
            );
        }
    }
    ensure!(
        stale == 0,
        "lastCommit older than the app's newest commit for {stale} AppSyncs"
    );
    drop(op);
    // Each foreign commit is one branch update, and so is each push of the operator.
    let pushes = updates - (flog.shas.len() + 1);
    let on_push = KILLS.iter().filter(|k| matches!(k, Kill::OnPush)).count();
    let rejections = count_lines(&log_path, "rejected as non-fast-forward");
    eprintln!(
        "race: {rounds} rounds, {kills} kills, {} foreign commits ({} foreign retries), {operator_commits} operator commits in {pushes} pushes ({rejections} rejected and re-applied; operator commits landed per killed life {landed_per_life:?}, {unrecorded} of {on_push} kills right after a push landed before its status), {} commits, lastCommit older than the app's newest commit for {stale} of {APPS} AppSyncs, lost = 0",
        flog.shas.len() + 1,
        flog.retries,
        commits.len()
    );
    Ok(())
}
