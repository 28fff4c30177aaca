//! Signed commits end to end: `spec.commitSigning` naming a Secret that does not exist yet
//! holds every push; the Secret's creation makes the config Ready and the AppSync's commit
//! verifies with the real `git verify-commit`; a key with a passphrase stops pushes again; the
//! deploy key Secret can be named to sign with the deploy key.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::Api;
use tooljet_gitsync_operator::api::{AppSync, GitSyncConfig};
use tooljet_gitsync_testkit::gitserver::{Access, GitServer};

use crate::gitsyncconfig::manifest;
use crate::support::{
    apply, appsync_manifest, aps_has, event_notes, has, logs, namespace, poke, secret, trial,
    wait_aps, wait_events, wait_gsc, Env,
};

pub fn trials() -> Vec<libtest_mimic::Trial> {
    vec![trial(
        "signing_waits_for_its_key_then_commits_verify",
        signing,
    )]
}

/// A key pair made by the real `ssh-keygen`: private key, public line, and the fingerprint
/// `ssh-keygen -lf` prints.
struct Keygen {
    private: String,
    public: String,
    fingerprint: String,
}

fn keygen(passphrase: &str) -> Result<Keygen> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("identity");
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-C",
            "signer@e2e",
            "-N",
            passphrase,
            "-f",
        ])
        .arg(&path)
        .status()?;
    ensure!(st.success(), "ssh-keygen");
    let listed = Command::new("ssh-keygen").arg("-lf").arg(&path).output()?;
    ensure!(listed.status.success(), "ssh-keygen -lf");
    let fingerprint = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .nth(1)
        .context("fingerprint")?
        .to_owned();
    Ok(Keygen {
        private: std::fs::read_to_string(&path)?,
        public: std::fs::read_to_string(path.with_extension("pub"))?
            .trim()
            .to_owned(),
        fingerprint,
    })
}

/// The base64 lines of a private key: none of them may show anywhere.
fn secret_lines(private: &str) -> Vec<&str> {
    private
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .collect()
}

fn head(git: &GitServer) -> Option<String> {
    git.git("apps", &["rev-parse", "--verify", "-q", "refs/heads/main"])
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// `git verify-commit` of `sha` trusting only `public`; the fingerprint git saw.
fn verify(git: &GitServer, sha: &str, public: &str) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let allowed = dir.path().join("allowed_signers");
    std::fs::write(&allowed, format!("* namespaces=\"git\" {public}\n"))?;
    let allowed = format!("gpg.ssh.allowedSignersFile={}", allowed.display());
    let run = |args: &[&str]| {
        Command::new("git")
            .args(["-c", "safe.directory=*", "-c"])
            .arg(&allowed)
            .arg("-C")
            .arg(git.repo_path("apps"))
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
    Ok(shown
        .strip_prefix("G ")
        .with_context(|| format!("git log says {shown:?}"))?
        .to_owned())
}

fn signing_status(g: &GitSyncConfig) -> Option<(String, String)> {
    g.status
        .as_ref()
        .and_then(|s| s.commit_signing.as_ref())
        .map(|c| (c.fingerprint.clone(), c.public_key.clone()))
}

fn last_commit(a: &AppSync) -> Option<String> {
    a.status
        .as_ref()
        .and_then(|s| s.last_commit.as_ref())
        .map(|c| c.sha.clone())
}

async fn set_signing_secret(env: &Env, ns: &str, name: &str) -> Result<()> {
    let patch = serde_json::json!({"spec": {"commitSigning": {"secretRef": {"name": name}}}});
    Api::<GitSyncConfig>::namespaced(env.client.clone(), ns)
        .patch("sales", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn signing(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "signing").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    let extra = "  commitSigning:\n    secretRef: { name: sales-signing }\n";
    apply::<GitSyncConfig>(c, &ns, &manifest("sales", &url, "", extra)).await?;
    let g = wait_gsc(c, &ns, "sales", "public key", |g| {
        g.status.as_ref().is_some_and(|s| s.public_key.is_some())
    })
    .await?;
    let deploy_public = g
        .status
        .as_ref()
        .and_then(|s| s.public_key.clone())
        .context("publicKey")?;
    git.authorize(&deploy_public, Access::ReadWrite)?;
    poke::<GitSyncConfig>(c, &ns, "sales").await?;

    // No Secret: not Ready, saying which Secret to create and how; the repository itself works.
    let g = wait_gsc(c, &ns, "sales", "SigningKeyNotFound", |g| {
        has(g, "Ready", "False", "SigningKeyNotFound")
            && has(g, "RepositoryReachable", "True", "Connected")
    })
    .await?;
    ensure!(has(&g, "SigningKeyReady", "False", "SigningKeyNotFound"));
    let ready = g
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .context("Ready")?;
    ensure!(
        ready.message.contains(&format!("{ns}/sales-signing"))
            && ready.message.contains("identity")
            && ready.message.contains("ssh-keygen -t ed25519 -N ''"),
        "{}",
        ready.message
    );
    ensure!(
        signing_status(&g).is_none(),
        "status.commitSigning without a key"
    );

    // A Push AppSync waits: no commit at all.
    env.tooljet
        .create_app("Signed Demo", None)
        .map_err(anyhow::Error::msg)?;
    apply::<AppSync>(c, &ns, &appsync_manifest("demo", "Signed Demo", "Push", "")).await?;
    wait_aps(c, &ns, "demo", "waiting for its config", |a| {
        aps_has(a, "Ready", "False", "GitSyncConfigNotReady")
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        head(&git).is_none(),
        "a commit was made without the signing key"
    );

    // The Secret appears (an ed25519 key from ssh-keygen): Ready, and the commit verifies.
    let key = keygen("")?;
    secret(c, &ns, "sales-signing", &[("identity", &key.private)]).await?;
    let g = wait_gsc(c, &ns, "sales", "Ready with the signing key", |g| {
        has(g, "Ready", "True", "Ready")
    })
    .await?;
    ensure!(has(&g, "SigningKeyReady", "True", "KeyAvailable"));
    let (fingerprint, public) = signing_status(&g).context("status.commitSigning")?;
    ensure!(
        fingerprint == key.fingerprint,
        "{fingerprint} != {}",
        key.fingerprint
    );
    ensure!(public == key.public, "{public} != {}", key.public);
    let a = wait_aps(c, &ns, "demo", "signed commit", |a| {
        aps_has(a, "Ready", "True", "Committed")
    })
    .await?;
    let sha = last_commit(&a).context("lastCommit")?;
    ensure!(head(&git).as_deref() == Some(sha.as_str()));
    ensure!(verify(&git, &sha, &key.public)? == key.fingerprint);
    // Trusting another key fails: the check is real.
    ensure!(
        verify(&git, &sha, &deploy_public).is_err(),
        "verified with the deploy key"
    );

    // A rotated key is picked up from the Secret's watch, not at the interval (1 m): the
    // config is Ready, so nothing else would re-run it that soon.
    let rotated = keygen("")?;
    let rotated_at = std::time::Instant::now();
    Api::<Secret>::namespaced(c.clone(), &ns)
        .patch(
            "sales-signing",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"stringData": {"identity": rotated.private}})),
        )
        .await?;
    wait_gsc(c, &ns, "sales", "the rotated key in status", |g| {
        signing_status(g).is_some_and(|(fp, _)| fp == rotated.fingerprint)
    })
    .await?;
    let took = rotated_at.elapsed();
    ensure!(
        took < Duration::from_secs(30),
        "the rotated key showed after {took:?}: the Secret's change did not wake the config"
    );

    // A key with a passphrase: not Ready, and a change in ToolJet is not committed.
    let locked = keygen("correct horse")?;
    let patch = serde_json::json!({"stringData": {"identity": locked.private}});
    Api::<Secret>::namespaced(c.clone(), &ns)
        .patch(
            "sales-signing",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    let g = wait_gsc(c, &ns, "sales", "SigningKeyInvalid", |g| {
        has(g, "Ready", "False", "SigningKeyInvalid")
    })
    .await?;
    ensure!(
        signing_status(&g).is_none(),
        "status.commitSigning kept for a broken key"
    );
    let app_id = a
        .status
        .as_ref()
        .and_then(|s| s.app.as_ref())
        .and_then(|x| x.id.clone())
        .context("app id")?;
    env.tooljet
        .edit_app(&app_id, |d| {
            d["components"][0]["properties"]["e2eEdit"] = serde_json::json!({ "value": 1 });
        })
        .map_err(anyhow::Error::msg)?;
    poke::<AppSync>(c, &ns, "demo").await?;
    wait_aps(c, &ns, "demo", "waiting for its config", |a| {
        aps_has(a, "Ready", "False", "GitSyncConfigNotReady")
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        head(&git).as_deref() == Some(sha.as_str()),
        "committed with a broken key"
    );

    // The deploy key Secret named instead: commits are signed with the deploy key.
    set_signing_secret(&env, &ns, "sales-deploy-key").await?;
    let g = wait_gsc(c, &ns, "sales", "Ready with the deploy key", |g| {
        has(g, "Ready", "True", "Ready")
    })
    .await?;
    let deploy_fp = g
        .status
        .as_ref()
        .and_then(|s| s.public_key_fingerprint.clone())
        .context("publicKeyFingerprint")?;
    ensure!(signing_status(&g).map(|s| s.0) == Some(deploy_fp.clone()));
    poke::<AppSync>(c, &ns, "demo").await?;
    let a = wait_aps(c, &ns, "demo", "commit signed with the deploy key", |a| {
        aps_has(a, "Ready", "True", "Committed") && last_commit(a).is_some_and(|s| s != sha)
    })
    .await?;
    let second = last_commit(&a).context("lastCommit")?;
    ensure!(head(&git).as_deref() == Some(second.as_str()));
    ensure!(verify(&git, &second, &deploy_public)? == deploy_fp);
    ensure!(
        verify(&git, &second, &key.public).is_err(),
        "verified with the old key"
    );

    // Said in Events; no private key anywhere.
    wait_events(
        c,
        &ns,
        "sales",
        &["SigningKeyNotFound", "SigningKeyInvalid"],
    )
    .await?;
    let notes = event_notes(c, &ns).await?;
    let logged = logs();
    let shown = serde_json::to_string(&g.status)?;
    for private in [&key.private, &locked.private] {
        for line in secret_lines(private) {
            ensure!(!notes.contains(line), "a private key line in an Event");
            ensure!(!logged.contains(line), "a private key line in the log");
            ensure!(!shown.contains(line), "a private key line in status");
        }
    }
    Ok(())
}
