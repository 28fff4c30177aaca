//! The webhook receiver end to end: a commit pushed by a foreign client to the real sshd, then
//! signed deliveries to the in-process operator's receiver. With a 1 h interval, only a
//! delivery can make the Pull AppSync see the commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use hmac::{Hmac, Mac};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};
use sha2::Sha256;
use tooljet_gitsync_operator::api::{AppSync, GitSyncConfig};
use tooljet_gitsync_testkit::emulator::{Emulator, EmulatorConfig};
use tooljet_gitsync_testkit::gitserver::GitServer;

use crate::gitsyncconfig::{manifest, ready_config_with};
use crate::support::{
    self, apply, appsync_manifest, has, namespace, trial, wait_aps, wait_gsc, Env,
};

/// The webhook secret of the trial: never seen in status, Events or logs.
const TOKEN: &str = "wh-3c1f9a7e5b2d4f608a9c1e3b5d7f9a1c";

pub fn trials() -> Vec<libtest_mimic::Trial> {
    vec![trial(
        "webhook_deliveries_check_at_once_forgeries_and_replays_refused",
        deliveries,
    )]
}

fn hmac_hex(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(TOKEN.as_bytes()).expect("any key length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A GitHub push delivery for `reference` at `after`.
fn github_push(reference: &str, after: &str, id: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let body = serde_json::to_vec(&json!({
        "ref": reference,
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "repository": {"full_name": "acme/apps"},
        "pusher": {"name": "someone"},
    }))
    .expect("json");
    let headers = vec![
        ("X-GitHub-Event".into(), "push".into()),
        ("X-GitHub-Delivery".into(), id.into()),
        (
            "X-Hub-Signature-256".into(),
            format!("sha256={}", hmac_hex(&body)),
        ),
        ("Content-Type".into(), "application/json".into()),
    ];
    (headers, body)
}

async fn post(
    env: &Env,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<(u16, Value)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;
    let mut req = client
        .post(format!("http://{}{path}", env.webhook))
        .body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let res = req.send().await?;
    let code = res.status().as_u16();
    let json = res.json::<Value>().await.unwrap_or(Value::Null);
    Ok((code, json))
}

fn available(a: &AppSync) -> Option<String> {
    a.status
        .as_ref()
        .and_then(|s| s.available_update.as_ref())
        .map(|u| u.sha.clone())
}

fn last(a: &AppSync) -> Option<String> {
    a.status
        .as_ref()
        .and_then(|s| s.last_commit.as_ref())
        .map(|c| c.sha.clone())
}

/// Commits a change of Sales Dashboard (a foreign client: not the operator).
fn change_app(git: &GitServer, fixture: &[u8], n: u64) -> Result<String> {
    let mut changed: Value = serde_json::from_slice(fixture)?;
    changed["app"][0]["definition"]["appV2"]["components"][0]["properties"]["webhookEdit"] =
        json!({ "value": n });
    git.commit_files(
        "apps",
        "main",
        &[(
            "Sales Dashboard/v3.json",
            &serde_json::to_vec_pretty(&changed)?,
        )],
        &format!("Version v3 Of Sales Dashboard: edit {n}"),
    )
}

async fn deliveries(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "webhook").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    let (seed, fixture) = support::seed_tooljet_repo(&git)?;
    let dashboard = fixture[1].1.clone();
    let prod = Emulator::start(EmulatorConfig::default()).await?;
    support::secret(
        c,
        &ns,
        "tooljet-prod",
        &[
            ("email", &prod.email().unwrap_or_default()),
            ("password", &prod.password().unwrap_or_default()),
        ],
    )
    .await?;
    let m = manifest(
        "sales",
        &url,
        "",
        "  webhook:\n    secretRef: { name: repo-hook }\n",
    )
    .replace(&support::tooljet_url(), &prod.url())
    .replace("name: tooljet-api", "name: tooljet-prod")
    .replace("interval: 1m", "interval: 1h");

    // The Secret is missing: the config says so and stays Ready (the interval still works).
    ready_config_with(&env, &ns, &git, &m).await?;
    let g = wait_gsc(c, &ns, "sales", "WebhookSecretNotFound", |g| {
        has(g, "WebhookReady", "False", "WebhookSecretNotFound")
    })
    .await?;
    ensure!(has(&g, "Ready", "True", "Ready"));
    support::secret(c, &ns, "repo-hook", &[("token", "short")]).await?;
    wait_gsc(c, &ns, "sales", "WebhookSecretInvalid", |g| {
        has(g, "WebhookReady", "False", "WebhookSecretInvalid")
    })
    .await?;
    // The token as `echo` leaves it in a file: the newline is not part of it.
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.clone(), &ns);
    api.patch(
        "repo-hook",
        &PatchParams::default(),
        &Patch::Merge(json!({"stringData": {"token": format!("{TOKEN}\n")}})),
    )
    .await?;
    let g = wait_gsc(c, &ns, "sales", "WebhookReady", |g| {
        has(g, "WebhookReady", "True", "WebhookReady")
    })
    .await?;
    let path = g
        .status
        .as_ref()
        .and_then(|s| s.webhook.as_ref())
        .map(|w| w.path.clone())
        .context("status.webhook.path")?;
    ensure!(
        path == tooljet_gitsync_operator::webhook::path_for(TOKEN.as_bytes(), "sales", &ns),
        "path {path}"
    );
    let hook = env
        .ctx
        .hooks
        .of_config(&format!("{ns}/sales"))
        .context("registered")?;

    // A Manual Pull imports the seed.
    apply::<AppSync>(
        c,
        &ns,
        &appsync_manifest(
            "dash",
            "Sales Dashboard",
            "Pull",
            "  pull:\n    updatePolicy: Manual\n",
        ),
    )
    .await?;
    wait_aps(c, &ns, "dash", "imported", |a| {
        last(a).as_deref() == Some(seed.as_str())
    })
    .await?;

    // A foreign client pushes; nothing looks before the interval (1 h).
    let first = change_app(&git, &dashboard, 1)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a: AppSync = Api::namespaced(c.clone(), &ns).get("dash").await?;
    ensure!(available(&a).is_none(), "seen without a delivery");

    // Refused: forged, unsigned, unknown path, oversized. None of them checks.
    let (mut headers, body) = github_push("refs/heads/main", &first, "forged-1");
    headers[2].1 = format!("sha256={}", "0".repeat(64));
    let (code, answer) = post(&env, &path, &headers, body.clone()).await?;
    ensure!(
        code == 401 && answer["result"] == "bad_signature",
        "{code} {answer}"
    );
    let unsigned: Vec<_> = headers[..2].to_vec();
    let (code, answer) = post(&env, &path, &unsigned, body.clone()).await?;
    ensure!(
        code == 401 && answer["result"] == "unsigned",
        "{code} {answer}"
    );
    let (good_headers, good_body) = github_push("refs/heads/main", &first, "delivery-1");
    let wrong_path = format!("{}0", &path[..path.len() - 1]);
    let (code, _) = post(&env, &wrong_path, &good_headers, good_body.clone()).await?;
    ensure!(code == 404, "unknown path: {code}");
    let big = vec![b' '; tooljet_gitsync_operator::webhook::MAX_BODY + 1];
    // Refused on its Content-Length, before the body is read: the receiver may close the
    // connection while the client still writes (a broken pipe here); the count says 413.
    match post(&env, &path, &good_headers, big).await {
        Ok((code, _)) => ensure!(code == 413, "oversized: {code}"),
        Err(e) => eprintln!("webhook: oversized body cut off: {e:#}"),
    }
    ensure!(
        env.ctx
            .metrics
            .encode()
            .contains(r#"webhook_deliveries_total{provider="unknown",result="too_large"}"#),
        "an oversized body was not refused"
    );
    // A signature made with another secret over the right body.
    let mut other = good_headers.clone();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"another-secret-of-16+").expect("key");
    mac.update(&good_body);
    let forged: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    other[2].1 = format!("sha256={forged}");
    let (code, _) = post(&env, &path, &other, good_body.clone()).await?;
    ensure!(code == 401, "other secret: {code}");

    // Connections that never finish their headers are closed, and do not keep others out.
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut conn = tokio::net::TcpStream::connect(env.webhook).await?;
        tokio::io::AsyncWriteExt::write_all(&mut conn, b"POST /hook/x HTTP/1.1\r\nHost: a\r\n")
            .await?;
        idle.push(conn);
    }
    let (code, answer) = post(&env, &wrong_path, &good_headers, good_body.clone()).await?;
    ensure!(code == 404, "beside idle connections: {code} {answer}");
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        for conn in &mut idle {
            let mut buf = [0u8; 512];
            // The server ends it (a 408 and EOF, or a reset).
            loop {
                match tokio::io::AsyncReadExt::read(conn, &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        }
    })
    .await;
    ensure!(closed.is_ok(), "connections without headers stay open");

    // A ping, and a push of a ref nobody follows: answered, nothing checked.
    let ping_body = br#"{"zen":"Design for failure.","hook_id":1}"#.to_vec();
    let ping = vec![
        ("X-GitHub-Event".to_string(), "ping".to_string()),
        ("X-GitHub-Delivery".to_string(), "ping-1".to_string()),
        (
            "X-Hub-Signature-256".to_string(),
            format!("sha256={}", hmac_hex(&ping_body)),
        ),
    ];
    let (code, answer) = post(&env, &path, &ping, ping_body).await?;
    ensure!(code == 200 && answer["result"] == "ping", "{code} {answer}");
    let (h, b) = github_push("refs/heads/feature", &first, "feature-1");
    let (code, answer) = post(&env, &path, &h, b).await?;
    ensure!(
        code == 200 && answer["result"] == "ignored",
        "{code} {answer}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure!(
        hook.checks() == 0,
        "{} checks before a valid push",
        hook.checks()
    );
    let a: AppSync = Api::namespaced(c.clone(), &ns).get("dash").await?;
    ensure!(available(&a).is_none(), "a refused delivery made a check");

    // The signed delivery: the update is reported at once.
    let sent = Instant::now();
    let (code, answer) = post(&env, &path, &good_headers, good_body.clone()).await?;
    ensure!(
        code == 202 && answer["result"] == "accepted",
        "{code} {answer}"
    );
    wait_aps(c, &ns, "dash", "availableUpdate after the delivery", |a| {
        available(a).as_deref() == Some(first.as_str())
    })
    .await?;
    let took = sent.elapsed();
    eprintln!("webhook: commit reported {took:?} after the delivery");
    // The interval is an hour: only the delivery can have done it. The figure itself is the
    // benchmark's (benches/pull.rs); here it only has to be far below any interval.
    ensure!(
        took < Duration::from_secs(5),
        "reported {took:?} after the delivery"
    );
    ensure!(
        last(
            &Api::<AppSync>::namespaced(c.clone(), &ns)
                .get("dash")
                .await?
        ) == Some(seed)
    );

    // Replays: the same delivery (its id seen before); a delivery without an id, twice (its
    // body seen before). Neither checks again.
    let (code, answer) = post(&env, &path, &good_headers, good_body.clone()).await?;
    ensure!(
        code == 200 && answer["result"] == "duplicate",
        "{code} {answer}"
    );
    let checks = hook.checks();
    let (mut no_id, id_less_body) = github_push("refs/tags/none", &first, "unused");
    no_id.remove(1);
    let (code, answer) = post(&env, &path, &no_id, id_less_body.clone()).await?;
    ensure!(
        code == 200 && answer["result"] == "ignored",
        "{code} {answer}"
    );
    let (code, answer) = post(&env, &path, &no_id, id_less_body).await?;
    ensure!(
        code == 200 && answer["result"] == "duplicate",
        "{code} {answer}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure!(
        hook.checks() == checks,
        "{} checks for one push",
        hook.checks()
    );
    ensure!(checks == 1, "{checks} checks for one push");

    // Auto: the pending update is pulled, then a GitLab-style delivery of the next push.
    let aps: Api<AppSync> = Api::namespaced(c.clone(), &ns);
    aps.patch(
        "dash",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"pull": {"updatePolicy": "Auto"}}})),
    )
    .await?;
    wait_aps(c, &ns, "dash", "Auto pulls the update", |a| {
        last(a).as_deref() == Some(first.as_str())
    })
    .await?;
    let second = change_app(&git, &dashboard, 2)?;
    let body = serde_json::to_vec(&json!({
        "object_kind": "push", "ref": "refs/heads/main", "after": second,
        "checkout_sha": second, "project": {"path_with_namespace": "acme/apps"},
    }))?;
    let gitlab = vec![
        ("X-Gitlab-Event".to_string(), "Push Hook".to_string()),
        ("X-Gitlab-Token".to_string(), TOKEN.to_string()),
        ("X-Gitlab-Event-UUID".to_string(), "gl-1".to_string()),
    ];
    let (code, answer) = post(&env, &path, &gitlab, body).await?;
    ensure!(code == 202, "{code} {answer}");
    wait_aps(c, &ns, "dash", "Auto pull after a GitLab delivery", |a| {
        last(a).as_deref() == Some(second.as_str())
    })
    .await?;
    let app = prod
        .apps()
        .into_iter()
        .find(|a| a.name == "Sales Dashboard")
        .context("imported")?;
    ensure!(
        app.content["components"][0]["properties"]["webhookEdit"]["value"] == 2,
        "the second edit landed"
    );

    // A burst of deliveries for one push is one check.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = hook.checks();
    let third = change_app(&git, &dashboard, 3)?;
    let burst = (0..10).map(|i| {
        let (h, b) = github_push("refs/heads/main", &third, &format!("burst-{i}"));
        let mut b: Value = serde_json::from_slice(&b).expect("json");
        b["hook_id"] = json!(i);
        let b = serde_json::to_vec(&b).expect("json");
        let mut h = h;
        h[2].1 = format!("sha256={}", hmac_hex(&b));
        let env = env.clone();
        let path = path.clone();
        async move { post(&env, &path, &h, b).await }
    });
    for r in futures::future::join_all(burst).await {
        let (code, answer) = r?;
        ensure!(code == 202, "{code} {answer}");
    }
    wait_aps(c, &ns, "dash", "Auto pull after the burst", |a| {
        last(a).as_deref() == Some(third.as_str())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let burst_checks = hook.checks() - before;
    eprintln!("webhook: 10 deliveries, {burst_checks} check(s)");
    // One, unless the machine is so slow that deliveries straggle past the first check (each
    // names the commit, so one arriving during it needs none; at most one more after it).
    ensure!(
        (1..=2).contains(&burst_checks),
        "{burst_checks} checks for a burst of 10"
    );

    // Counted, and the secret is nowhere.
    let metrics = env.ctx.metrics.encode();
    for want in [
        r#"webhook_deliveries_total{provider="github",result="accepted"}"#,
        r#"webhook_deliveries_total{provider="unknown",result="bad_signature"}"#,
        r#"webhook_deliveries_total{provider="unknown",result="unsigned"}"#,
        r#"webhook_deliveries_total{provider="unknown",result="unknown_path"}"#,
        r#"webhook_deliveries_total{provider="unknown",result="too_large"}"#,
        r#"webhook_deliveries_total{provider="github",result="duplicate"}"#,
        r#"webhook_deliveries_total{provider="gitlab",result="accepted"}"#,
    ] {
        ensure!(metrics.contains(want), "metrics lack {want}");
    }
    let g: GitSyncConfig = Api::namespaced(c.clone(), &ns).get("sales").await?;
    let status = serde_json::to_string(&g.status)?;
    let events = support::event_notes(c, &ns).await?;
    for (what, text) in [
        ("status", status.as_str()),
        ("events", events.as_str()),
        ("metrics", metrics.as_str()),
        ("logs", &support::logs()),
    ] {
        ensure!(!text.contains(TOKEN), "the webhook token is in {what}");
    }
    Ok(())
}
