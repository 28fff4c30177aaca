//! A hostile tenant: a table of bad inputs (URLs, branches, names, intervals, Secrets,
//! references, revisions, repository content, direction flips), each refused at admission or
//! ending `Ready=False` with a reason and a message; afterwards the operator still works, no
//! injected command ran, and git holds nothing outside the apps' folders.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};
use tooljet_gitsync_operator::api::{AppSync, GitSyncConfig};
use tooljet_gitsync_testkit::emulator::{Emulator, EmulatorConfig};
use tooljet_gitsync_testkit::gitserver::{Access, GitServer};

use crate::support::{self, condition, namespace, poke, trial, wait_aps, wait_gsc, Env};

pub fn trials() -> Vec<libtest_mimic::Trial> {
    vec![trial("hostile_inputs_are_refused_with_reasons", hostile)]
}

/// Where an injected command would leave its mark.
const PWNED: &str = "/tmp/tooljet-gitsync-hostile-pwned";

/// What a case must end in: refused by the API server, or these Ready=False reasons.
#[derive(Clone, Copy)]
enum Expect {
    Admission,
    Reasons(&'static [&'static str]),
    /// Refused at admission, or these reasons (the API server may or may not take it).
    Either(&'static [&'static str]),
}

struct Case {
    kind: &'static str,
    name: String,
    spec: Value,
    expect: Expect,
}

fn gsc_spec(url: &str, tooljet: &str, extra: Value) -> Value {
    let mut spec = json!({
        "repository": {"url": url, "branch": "main"},
        "tooljet": {"url": tooljet, "workspace": "my-workspace", "credentialsSecretRef": {"name": "tj-hostile"}},
        "interval": "10s",
    });
    merge(&mut spec, &extra);
    spec
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

async fn apply(env: &Env, ns: &str, kind: &str, name: &str, spec: &Value) -> Result<()> {
    let obj = json!({
        "apiVersion": "gitsync.tooljet.io/v1alpha1", "kind": kind,
        "metadata": {"name": name}, "spec": spec,
    });
    let params = PatchParams::apply("e2e-user").force();
    match kind {
        "GitSyncConfig" => {
            let api: Api<GitSyncConfig> = Api::namespaced(env.client.clone(), ns);
            api.patch(name, &params, &Patch::Apply(&obj)).await?;
        }
        _ => {
            let api: Api<AppSync> = Api::namespaced(env.client.clone(), ns);
            api.patch(name, &params, &Patch::Apply(&obj)).await?;
        }
    }
    Ok(())
}

/// A Ready GitSyncConfig `name` for `url` (its key authorized on `git`).
async fn ready_config(
    env: &Env,
    ns: &str,
    git: &GitServer,
    name: &str,
    url: &str,
    tooljet: &str,
) -> Result<()> {
    apply(
        env,
        ns,
        "GitSyncConfig",
        name,
        &gsc_spec(url, tooljet, json!({})),
    )
    .await?;
    let g = wait_gsc(&env.client, ns, name, "public key", |g| {
        g.status.as_ref().is_some_and(|s| s.public_key.is_some())
    })
    .await?;
    let public = g.status.and_then(|s| s.public_key).context("publicKey")?;
    git.authorize(&public, Access::ReadWrite)?;
    poke::<GitSyncConfig>(&env.client, ns, name).await?;
    wait_gsc(&env.client, ns, name, "Ready", |g| {
        support::has(g, "Ready", "True", "Ready")
    })
    .await?;
    Ok(())
}

fn gsc_cases(url: &str, tooljet: &str) -> Vec<Case> {
    let g = |name: &str, spec: Value, expect| Case {
        kind: "GitSyncConfig",
        name: format!("g-{name}"),
        spec,
        expect,
    };
    let with_url = |u: &str| gsc_spec(u, tooljet, json!({}));
    let with = |extra: Value| gsc_spec(url, tooljet, extra);
    let bad_url = Expect::Reasons(&["InvalidURL", "UnsupportedURL"]);
    let bad_branch = Expect::Reasons(&["InvalidBranch"]);
    let bad_interval = Expect::Reasons(&["InvalidInterval"]);
    vec![
        g(
            "https",
            with_url("https://github.com/acme/apps.git"),
            Expect::Reasons(&["InvalidSpec"]),
        ),
        g(
            "httpscreds",
            with_url("https://x-access-token:ghs_x@127.0.0.1/r.git"),
            bad_url,
        ),
        g("http", with_url("http://127.0.0.1/r.git"), bad_url),
        g("gitproto", with_url("git://127.0.0.1/r.git"), bad_url),
        g(
            "ext",
            with_url(&format!("ext::sh -c touch% {PWNED}")),
            bad_url,
        ),
        g(
            "proxycommand",
            with_url(&format!("git@-oProxyCommand=touch {PWNED}:r.git")),
            bad_url,
        ),
        g(
            "sshoption",
            with_url(&format!("ssh://-oProxyCommand=touch%20{PWNED}/r.git")),
            bad_url,
        ),
        g("port", with_url("ssh://git@127.0.0.1:99999/r.git"), bad_url),
        g("emptyurl", with_url(""), Expect::Admission),
        g("path", with_url("/srv/git/apps.git"), bad_url),
        g(
            "fileurl",
            with_url("file:///etc"),
            Expect::Reasons(&[
                "FileURLNotAllowed",
                "UnsupportedURL",
                "RepositoryNotFound",
                "GitError",
            ]),
        ),
        g(
            "branch-empty",
            with(json!({"repository": {"branch": ""}})),
            Expect::Admission,
        ),
        g(
            "branch-dash",
            with(json!({"repository": {"branch": "-x"}})),
            bad_branch,
        ),
        g(
            "branch-dotdot",
            with(json!({"repository": {"branch": "a..b"}})),
            bad_branch,
        ),
        g(
            "branch-space",
            with(json!({"repository": {"branch": "a b"}})),
            bad_branch,
        ),
        g(
            "branch-lock",
            with(json!({"repository": {"branch": "x.lock"}})),
            bad_branch,
        ),
        g(
            "branch-hidden",
            with(json!({"repository": {"branch": ".hidden"}})),
            bad_branch,
        ),
        g(
            "branch-colon",
            with(json!({"repository": {"branch": "a:b"}})),
            bad_branch,
        ),
        g(
            "branch-option",
            with(json!({"repository": {"branch": format!("--upload-pack=touch {PWNED}")}})),
            bad_branch,
        ),
        g(
            "interval-short",
            with(json!({"interval": "1s"})),
            bad_interval,
        ),
        g(
            "interval-word",
            with(json!({"interval": "soon"})),
            Expect::Admission,
        ),
        g(
            "interval-huge",
            with(json!({"interval": "18000000000000000000s"})),
            bad_interval,
        ),
        g(
            "interval-years",
            with(json!({"interval": "99999h"})),
            bad_interval,
        ),
        g(
            "knownhosts",
            with(json!({"repository": {"knownHosts": "this is not a host key"}})),
            Expect::Reasons(&["InvalidKnownHosts"]),
        ),
        g(
            "keytype",
            with(json!({"deployKey": {"type": "dsa"}})),
            Expect::Admission,
        ),
        g(
            "nocreds",
            with(json!({"tooljet": {"credentialsSecretRef": {"name": "does-not-exist"}}})),
            Expect::Reasons(&["ToolJetReachable:CredentialsSecretNotFound"]),
        ),
        g(
            "emptycreds",
            with(json!({"tooljet": {"credentialsSecretRef": {"name": "empty-creds"}}})),
            Expect::Reasons(&["ToolJetReachable:CredentialsInvalid"]),
        ),
        g(
            "ftp",
            with(json!({"tooljet": {"url": "ftp://127.0.0.1/"}})),
            Expect::Admission,
        ),
        g(
            "workspace",
            with(json!({"tooljet": {"workspace": "no-such-workspace"}})),
            Expect::Reasons(&["ToolJetReachable:WorkspaceNotFound"]),
        ),
        g(
            "longsecret",
            with(json!({"deployKey": {"secretName": "x".repeat(300)}})),
            Expect::Admission,
        ),
        g(
            "garbagekey",
            with(json!({"deployKey": {"secretName": "garbage-key"}})),
            Expect::Reasons(&["SecretInvalid"]),
        ),
        g(
            "azure",
            with_url("git@ssh.dev.azure.com:v3/acme/proj/apps"),
            Expect::Reasons(&["KeyTypeUnsupported"]),
        ),
    ]
}

fn aps_cases() -> Vec<Case> {
    let a = |name: &str, spec: Value, expect| Case {
        kind: "AppSync",
        name: format!("a-{name}"),
        spec,
        expect,
    };
    let push =
        |app: &str| json!({"gitSyncConfigRef": {"name": "good"}, "app": app, "direction": "Push"});
    let pull = |cfg: &str, app: &str, extra: Value| {
        let mut s = json!({"gitSyncConfigRef": {"name": cfg}, "app": app, "direction": "Pull"});
        merge(&mut s, &json!({"pull": extra}));
        s
    };
    let bad_rev = Expect::Reasons(&["InvalidRevision"]);
    vec![
        a("app-empty", push(""), Expect::Admission),
        a("app-id", push("id:"), Expect::Reasons(&["InvalidApp"])),
        a("app-blank", push("   "), Expect::Reasons(&["InvalidApp"])),
        a(
            "rev-option",
            pull(
                "good",
                "Sales",
                json!({"revision": format!("--upload-pack=touch {PWNED}")}),
            ),
            bad_rev,
        ),
        a(
            "rev-tilde",
            pull("good", "Sales", json!({"revision": "HEAD~1"})),
            bad_rev,
        ),
        a(
            "rev-range",
            pull("good", "Sales", json!({"revision": "main..dev"})),
            bad_rev,
        ),
        a(
            "rev-missing",
            pull("good", "Sales", json!({"revision": "no-such-branch"})),
            Expect::Reasons(&["RevisionNotFound"]),
        ),
        a(
            "crossns",
            json!({"gitSyncConfigRef": {"name": "good", "namespace": "kube-system"}, "app": "Sales", "direction": "Push"}),
            Expect::Reasons(&["CrossNamespaceRefDenied"]),
        ),
        a(
            "noconfig",
            json!({"gitSyncConfigRef": {"name": "nope"}, "app": "Sales", "direction": "Push"}),
            Expect::Reasons(&["GitSyncConfigNotFound"]),
        ),
        a(
            "badconfig",
            json!({"gitSyncConfigRef": {"name": "g-https"}, "app": "Sales", "direction": "Push"}),
            Expect::Reasons(&["GitSyncConfigNotReady"]),
        ),
        a(
            "direction",
            json!({"gitSyncConfigRef": {"name": "good"}, "app": "Sales", "direction": "Sideways"}),
            Expect::Admission,
        ),
        a(
            "dotdot",
            push("../evil"),
            Expect::Reasons(&["AppNameRefused"]),
        ),
        a("slash", push("a/b"), Expect::Reasons(&["AppNameRefused"])),
        a("dot", push(".hidden"), Expect::Reasons(&["AppNameRefused"])),
        a(
            "nul",
            push("nul\u{0}x"),
            Expect::Either(&["InvalidApp", "AppNameRefused"]),
        ),
        a(
            "noapp",
            push("No Such App"),
            Expect::Reasons(&["AppNotFound"]),
        ),
        a(
            "noversion",
            json!({"gitSyncConfigRef": {"name": "good"}, "app": "Sales", "direction": "Push", "push": {"version": "v99"}}),
            Expect::Reasons(&["AppVersionNotFound"]),
        ),
        a(
            "brokenjson",
            pull("bad", "Broken Json", json!({})),
            Expect::Reasons(&["InvalidExport"]),
        ),
        a(
            "toonew",
            pull("bad", "Too New", json!({})),
            Expect::Reasons(&["ToolJetVersionTooNew"]),
        ),
        a(
            "notingit",
            pull("bad", "Not There", json!({})),
            Expect::Reasons(&["AppNotInGit"]),
        ),
        a(
            "badmeta",
            pull("badmeta", "Sales", json!({})),
            Expect::Reasons(&["AppNotInGit", "InvalidRepositoryContent"]),
        ),
        a(
            "expect",
            pull("bad", "Good App", json!({"expectVersion": "v9"})),
            Expect::Reasons(&["VersionMismatch"]),
        ),
    ]
}

/// A ToolJet export of `name` as git would hold it (from the emulator's own export).
fn export_of(tooljet: &Emulator, name: &str, tooljet_version: &str) -> Result<Vec<u8>> {
    let app = tooljet.create_app(name, None).map_err(anyhow::Error::msg)?;
    let mut export = tooljet.export_of(&app.id).context("export")?;
    export["tooljet_version"] = json!(tooljet_version);
    tooljet.delete_app(&app.id);
    Ok(serde_json::to_vec_pretty(&export)?)
}

fn meta_entry(name: &str) -> Value {
    json!({"gitAppName": name, "lastCommitMessage": "x", "gitVersionId": "v1id", "lastpushDate": "2026-01-01T00:00:00.000Z", "gitVersionName": "v1", "lastCommitUser": "x"})
}

/// Repositories with broken content: `bad` (an app file that is not JSON, one from a newer
/// ToolJet, a good one) and `badmeta` (a `.meta/meta.json` that is not JSON).
fn seed_bad_repos(git: &GitServer, tooljet: &Emulator) -> Result<()> {
    git.create_repo("bad")?;
    let meta = json!({
        "g-broken": meta_entry("Broken Json"),
        "g-toonew": meta_entry("Too New"),
        "g-good": meta_entry("Good App"),
    });
    let toonew = export_of(tooljet, "Too New", "99.0.0")?;
    let good = export_of(tooljet, "Good App", "3.16.0")?;
    let meta = serde_json::to_vec_pretty(&meta)?;
    let files: Vec<(&str, &[u8])> = vec![
        (".meta/meta.json", &meta),
        ("Broken Json/v1.json", b"{ this is not json"),
        ("Too New/v1.json", &toonew),
        ("Good App/v1.json", &good),
    ];
    git.commit_files("bad", "main", &files, "broken content")?;
    git.create_repo("badmeta")?;
    git.commit_files(
        "badmeta",
        "main",
        &[(".meta/meta.json", b"[not, json")],
        "broken meta",
    )?;
    Ok(())
}

/// Ready=False with one of `reasons` and a message; or, for a mistaken Ready=True at the
/// current generation, an error.
fn verdict(kind: &str, obj: Option<&Value>, reasons: &[&str]) -> Result<bool> {
    let generation = obj.and_then(|o| o["metadata"]["generation"].as_i64());
    let conds: Vec<tooljet_gitsync_operator::api::Condition> = obj
        .and_then(|o| serde_json::from_value(o["status"]["conditions"].clone()).ok())
        .unwrap_or_default();
    let Some(ready) = condition(&conds, "Ready") else {
        return Ok(false);
    };
    if ready.observed_generation != generation {
        return Ok(false);
    }
    if ready.status == "True" {
        bail!("{kind} is Ready ({}) but should be refused", ready.reason);
    }
    // `Type:Reason`: that condition (a fresh key is AwaitingDeployKey first, so the ToolJet
    // part shows in ToolJetReachable while Ready reports the repository).
    let matches = reasons.iter().any(|r| match r.split_once(':') {
        Some((t, reason)) => condition(&conds, t).is_some_and(|c| {
            c.status == "False" && c.reason == reason && !c.message.trim().is_empty()
        }),
        None => ready.reason == *r && !ready.message.trim().is_empty(),
    });
    Ok(matches)
}

async fn object_of(env: &Env, ns: &str, kind: &str, name: &str) -> Result<Option<Value>> {
    let v = match kind {
        "GitSyncConfig" => {
            let api: Api<GitSyncConfig> = Api::namespaced(env.client.clone(), ns);
            api.get_opt(name)
                .await?
                .map(serde_json::to_value)
                .transpose()?
        }
        _ => {
            let api: Api<AppSync> = Api::namespaced(env.client.clone(), ns);
            api.get_opt(name)
                .await?
                .map(serde_json::to_value)
                .transpose()?
        }
    };
    Ok(v)
}

async fn hostile(env: Arc<Env>) -> Result<()> {
    let _ = std::fs::remove_file(PWNED);
    let c = &env.client;
    let ns = namespace(c, "hostile").await?;
    let tooljet = Emulator::start(EmulatorConfig::default()).await?;
    support::secret(
        c,
        &ns,
        "tj-hostile",
        &[("token", &tooljet.token().unwrap_or_default())],
    )
    .await?;
    support::secret(c, &ns, "empty-creds", &[("note", "no token here")]).await?;
    support::secret(c, &ns, "garbage-key", &[("identity", "not a key")]).await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    seed_bad_repos(&git, &tooljet)?;
    for name in [
        "Sales",
        "../evil",
        "a/b",
        ".hidden",
        "nul\u{0}x",
        "CaseClash",
        "caseclash",
        "Multi",
    ] {
        tooljet.create_app(name, None).map_err(anyhow::Error::msg)?;
    }
    let multi = tooljet
        .apps()
        .into_iter()
        .find(|a| a.name == "Multi")
        .context("Multi")?;
    tooljet
        .add_version(&multi.id, "v2")
        .map_err(anyhow::Error::msg)?;
    ready_config(&env, &ns, &git, "good", &url, &tooljet.url()).await?;
    ready_config(&env, &ns, &git, "bad", &git.url("bad"), &tooljet.url()).await?;
    ready_config(
        &env,
        &ns,
        &git,
        "badmeta",
        &git.url("badmeta"),
        &tooljet.url(),
    )
    .await?;

    let mut cases = gsc_cases(&url, &tooljet.url());
    cases.extend(aps_cases());
    let push = |app: &str, version: Option<&str>| {
        let mut s = json!({"gitSyncConfigRef": {"name": "good"}, "app": app, "direction": "Push"});
        if let Some(v) = version {
            s["push"] = json!({"version": v});
        }
        s
    };
    // Good pushes the dependent cases build on.
    for (name, app) in [("flip", "Sales"), ("clash-first", "CaseClash")] {
        apply(&env, &ns, "AppSync", name, &push(app, None)).await?;
        wait_aps(c, &ns, name, "committed", |a| {
            support::aps_has(a, "Ready", "True", "Committed")
        })
        .await?;
    }
    cases.push(Case {
        kind: "AppSync",
        name: "a-clash".into(),
        spec: push("caseclash", None),
        expect: Expect::Reasons(&["FolderCollision"]),
    });
    cases.push(Case {
        kind: "AppSync",
        name: "a-conflict-1".into(),
        spec: push("Multi", Some("v1")),
        expect: Expect::Reasons(&["PushConflict"]),
    });
    cases.push(Case {
        kind: "AppSync",
        name: "a-conflict-2".into(),
        spec: push("Multi", Some("v2")),
        expect: Expect::Reasons(&["PushConflict"]),
    });
    // Turning a synced Push AppSync into a Pull (1.20 has no CEL: the operator refuses it).
    let mut flipped = push("Sales", None);
    flipped["direction"] = json!("Pull");
    cases.push(Case {
        kind: "AppSync",
        name: "flip".into(),
        spec: flipped,
        expect: Expect::Reasons(&["DirectionChanged"]),
    });

    let mut pending = Vec::new();
    let mut admission = 0;
    for case in &cases {
        match (
            apply(&env, &ns, case.kind, &case.name, &case.spec).await,
            case.expect,
        ) {
            (Err(_), Expect::Admission | Expect::Either(_)) => admission += 1,
            (Ok(()), Expect::Admission) => bail!("{} {} was admitted", case.kind, case.name),
            (Err(e), Expect::Reasons(_)) => bail!(
                "{} {} was refused at admission: {e:#}",
                case.kind,
                case.name
            ),
            (Ok(()), Expect::Reasons(r) | Expect::Either(r)) => {
                pending.push((case.kind, case.name.clone(), r))
            }
        }
    }
    let total = cases.len();
    let deadline = Instant::now() + Duration::from_secs(150);
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (kind, name, reasons) in pending {
            let status = object_of(&env, &ns, kind, &name).await?;
            // Whichever of the two conflicting pushes reconciles first commits once; then both
            // are refused.
            let conflict_ok = name.starts_with("a-conflict-");
            if !verdict(&format!("{kind} {name}"), status.as_ref(), reasons).or_else(|e| {
                if conflict_ok {
                    Ok(false)
                } else {
                    Err(e)
                }
            })? {
                still.push((kind, name, reasons));
            }
        }
        pending = still;
        if Instant::now() > deadline {
            let names: Vec<String> = pending
                .iter()
                .map(|(k, n, r)| format!("{k} {n} (want {r:?})"))
                .collect();
            bail!("not refused with the expected reason: {names:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Nothing injected ran, nothing left the apps' folders, and the operator still works.
    ensure!(
        !std::path::Path::new(PWNED).exists(),
        "an injected command ran"
    );
    let paths = git.git("apps", &["ls-tree", "-r", "--name-only", "main"])?;
    let top: std::collections::BTreeSet<&str> =
        paths.lines().filter_map(|p| p.split('/').next()).collect();
    let allowed: std::collections::BTreeSet<&str> = [".meta", "Sales", "CaseClash", "Multi"].into();
    ensure!(
        top.is_subset(&allowed),
        "git holds {top:?}, beyond {allowed:?}"
    );
    ensure!(
        paths
            .lines()
            .all(|p| !p.contains("..") && !p.starts_with('/')),
        "unsafe path in {paths}"
    );
    apply(
        &env,
        &ns,
        "AppSync",
        "still-alive",
        &push("CaseClash", None),
    )
    .await?;
    wait_aps(
        c,
        &ns,
        "still-alive",
        "Ready after the hostile inputs",
        |a| {
            support::aps_has(a, "Ready", "True", "UpToDate")
                || support::aps_has(a, "Ready", "True", "Committed")
        },
    )
    .await?;
    eprintln!("hostile: {total} bad inputs, {admission} refused at admission, {} refused with a reason; operator alive, nothing injected ran, git clean", total - admission);
    Ok(())
}
