//! Promotion that works in prod (issue #13): an app pulled into a prod ToolJet that starts with
//! neither its workspace constants nor its data-source credentials ends up working, with both
//! taken from Kubernetes Secrets; a rotated Secret is written again (and nothing else), a key
//! removed from a pruning source deletes its constant, token credentials get a clear reason,
//! and no value is ever seen in status, Events, metrics or the operator's log. Enterprise and
//! Community Edition.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;
use tooljet_gitsync_operator::api::{AppSync, GitSyncConfig};
use tooljet_gitsync_testkit::emulator::{add_postgres_source, Emulator, EmulatorConfig};
use tooljet_gitsync_testkit::gitserver::GitServer;

use crate::gitsyncconfig::ready_config;
use crate::pull::prod_config_in;
use crate::support::{
    self, apply, appsync_manifest, aps_has, event_notes, has, namespace, trial, wait, wait_aps,
    wait_gsc, Env,
};

const API_KEY: &str = "prod-api-key-Zq81xV";
const API_KEY_2: &str = "prod-api-key-rotated-Kp20";
const DB_PASSWORD: &str = "pg-pass-Wm47yT";
const DB_PASSWORD_2: &str = "pg-pass-rotated-Hx93";
const API_URL: &str = "https://api.prod.example";

pub fn trials() -> Vec<libtest_mimic::Trial> {
    vec![trial(
        "values_constants_and_credentials_follow_secrets_ee_and_ce",
        promotion,
    )]
}

async fn patch_spec(env: &Env, ns: &str, name: &str, patch: serde_json::Value) -> Result<()> {
    let api: Api<GitSyncConfig> = Api::namespaced(env.client.clone(), ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "spec": patch })),
    )
    .await?;
    Ok(())
}

/// Replaces a Secret's data with exactly `data` (keys not listed are removed).
async fn replace_secret(env: &Env, ns: &str, name: &str, data: &[(&str, &str)]) -> Result<()> {
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client.clone(), ns);
    let mut s = api.get(name).await?;
    s.data = Some(
        data.iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    k8s_openapi::ByteString(v.as_bytes().to_vec()),
                )
            })
            .collect(),
    );
    s.string_data = None;
    api.replace(name, &Default::default(), &s).await?;
    Ok(())
}

fn constant_writes(prod: &Emulator) -> usize {
    prod.requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/organization-constants") && r.method != "GET")
        .count()
}

async fn promotion(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    // dev: an app using a Global constant, a secret, and a postgres data source.
    let dev_ns = namespace(c, "values-dev").await?;
    ready_config(&env, &dev_ns, &git, &url, "").await?;
    let ws = env.tooljet.workspace().id;
    let env_ids: Vec<String> = env
        .tooljet
        .environments(&ws)
        .into_iter()
        .map(|e| e.id)
        .collect();
    let app = env
        .tooljet
        .create_app("Orders", None)
        .map_err(anyhow::Error::msg)?;
    env.tooljet
        .edit_app(&app.id, |content| {
            add_postgres_source(content, "orders_db", &env_ids);
            add_postgres_source(content, "reports_db", &env_ids);
            content["components"][0]["properties"]["url"] =
                json!({ "value": "{{constants.API_URL}}/orders" });
            content["components"][0]["properties"]["key"] =
                json!({ "value": "{{secrets.API_KEY}}" });
        })
        .map_err(anyhow::Error::msg)?;
    apply::<AppSync>(
        c,
        &dev_ns,
        &appsync_manifest("orders", "Orders", "Push", ""),
    )
    .await?;
    wait_aps(c, &dev_ns, "orders", "pushed", |a| {
        aps_has(a, "Ready", "True", "Committed")
    })
    .await?;

    // Token credentials cannot keep constants: a reason that says which credentials it needs.
    patch_spec(
        &env,
        &dev_ns,
        "sales",
        json!({"tooljet": {"constants": [{"secretRef": {"name": "nowhere"}}]}}),
    )
    .await?;
    let g = wait_gsc(c, &dev_ns, "sales", "token refused", |g| {
        has(g, "ValuesApplied", "False", "ConstantsNeedSession")
    })
    .await?;
    ensure!(
        has(&g, "Ready", "True", "Ready"),
        "the config itself stays Ready"
    );

    for community in [false, true] {
        let edition = if community { "ce" } else { "ee" };
        let ns = namespace(c, &format!("values-prod-{edition}")).await?;
        let prod = Emulator::start(EmulatorConfig {
            community,
            ..EmulatorConfig::default()
        })
        .await?;
        let pws = prod.workspace().id;
        prod_config_in(&env, &ns, &git, &url, &prod, "my-workspace").await?;
        support::secret(
            c,
            &ns,
            "prod-constants",
            &[("API_URL", API_URL), ("API_KEY", API_KEY)],
        )
        .await?;
        support::secret(c, &ns, "orders-db", &[("password", DB_PASSWORD)]).await?;
        let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(c.clone(), &ns);
        maps.create(
            &Default::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "prod-settings"}, "data": {"REGION": "eu-1"}}),
            )?,
        )
        .await?;

        // Before the config declares anything: the preflight holds the import.
        let pull = "  pull:\n    updatePolicy: Auto\n    requireConstants: true\n";
        apply::<AppSync>(c, &ns, &appsync_manifest("orders", "Orders", "Pull", pull)).await?;
        let a = wait_aps(c, &ns, "orders", "held by the preflight", |a| {
            aps_has(a, "Ready", "False", "WorkspaceConstantsMissing")
        })
        .await?;
        let msg = a
            .status
            .as_ref()
            .and_then(|s| support::condition(&s.conditions, "Ready"))
            .map(|c| c.message.clone())
            .unwrap_or_default();
        ensure!(
            msg.contains("constants.API_URL") && msg.contains("secrets.API_KEY"),
            "{msg}"
        );
        ensure!(
            prod.data_source(&pws, "orders_db").is_none(),
            "nothing imported while held"
        );
        ensure!(
            !prod.apps_in(&pws).iter().any(|x| x.name == "Orders"),
            "nothing imported while held"
        );

        patch_spec(
            &env,
            &ns,
            "sales",
            json!({"tooljet": {
                "constants": [{"secretRef": {"name": "prod-constants"}, "environment": "production",
                               "global": ["API_URL"], "prune": true},
                              {"configMapRef": {"name": "prod-settings"}, "global": ["REGION"]}],
                "dataSources": [{"name": "orders_db", "environment": "production",
                                 "optionsFrom": {"secretRef": {"name": "orders-db"}}}]
            }}),
        )
        .await?;
        let g = wait_gsc(c, &ns, "sales", "constants applied", |g| {
            has(g, "ValuesApplied", "True", "ValuesApplied")
        })
        .await?;
        let values = g.status.and_then(|s| s.values).context("status.values")?;
        ensure!(values.constants.len() == 3, "{values:?}");
        ensure!(
            prod.constant_value(&pws, "REGION", false, "staging")
                .as_deref()
                == Some("eu-1"),
            "a ConfigMap source without an environment is kept in every environment"
        );
        ensure!(values.data_sources.first().map(|d| d.state.as_str()) == Some("Waiting"));
        ensure!(
            values.note.is_some(),
            "a per-environment value is explained"
        );
        ensure!(
            prod.constant_value(&pws, "API_URL", false, "production")
                .as_deref()
                == Some(API_URL)
        );
        ensure!(
            prod.constant_value(&pws, "API_KEY", true, "production")
                .as_deref()
                == Some(API_KEY)
        );
        if !community {
            ensure!(
                prod.constant_value(&pws, "API_KEY", true, "development")
                    .unwrap_or_default()
                    .is_empty(),
                "Enterprise writes the named environment only"
            );
        }

        // Declared now: the held pull goes ahead.
        let a = wait_aps(c, &ns, "orders", "imported", |a| {
            aps_has(a, "Ready", "True", "Pulled")
        })
        .await?;
        let st = a.status.clone().context("status")?;
        ensure!(
            support::condition(&st.conditions, "WorkspaceConstantsMissing").is_none(),
            "{:?}",
            st.conditions
        );
        let uncredentialed = &st.data_sources_without_credentials;
        ensure!(
            uncredentialed.contains(&"reports_db".to_string())
                && !uncredentialed.contains(&"orders_db".to_string()),
            "{uncredentialed:?}"
        );
        // The import made the data source with an empty password; the config fills it in.
        let ds = prod
            .data_source(&pws, "orders_db")
            .context("data source imported")?;
        let ds_id = ds.id.clone();
        let password = |p: &Emulator| p.data_source_value(&ds_id, "production", "password");
        wait(Duration::from_secs(30), || async {
            (password(&prod) == Some(json!(DB_PASSWORD))).then_some(())
        })
        .await
        .context("the data source's password from the Secret")?;
        ensure!(
            prod.data_source_value(&ds_id, "production", "host")
                == Some(json!("db.example.invalid")),
            "other options kept"
        );
        wait_gsc(c, &ns, "sales", "data source applied", |g| {
            g.status
                .as_ref()
                .and_then(|s| s.values.as_ref())
                .is_some_and(|v| v.data_sources.iter().all(|d| d.state == "Applied"))
        })
        .await?;

        // Rotation: the data source's password is written again; no constant is.
        let writes = constant_writes(&prod);
        let ds_writes = prod.data_source_writes().len();
        replace_secret(&env, &ns, "orders-db", &[("password", DB_PASSWORD_2)]).await?;
        wait(Duration::from_secs(30), || async {
            (password(&prod) == Some(json!(DB_PASSWORD_2))).then_some(())
        })
        .await
        .context("the rotated password")?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        ensure!(
            constant_writes(&prod) == writes,
            "an unchanged constants Secret causes no write"
        );
        ensure!(
            prod.data_source_writes().len() == ds_writes + 1,
            "one write per rotation"
        );

        // A rotated constant, and one removed from the (pruning) source.
        replace_secret(&env, &ns, "prod-constants", &[("API_KEY", API_KEY_2)]).await?;
        wait(Duration::from_secs(30), || async {
            let rotated = prod
                .constant_value(&pws, "API_KEY", true, "production")
                .as_deref()
                == Some(API_KEY_2);
            let gone = prod
                .constant_value(&pws, "API_URL", false, "production")
                .is_none();
            (rotated && gone).then_some(())
        })
        .await
        .with_context(|| {
            format!(
                "{edition}: API_KEY rotated and API_URL deleted; API_KEY now {:?}, API_URL {:?}",
                prod.constant_value(&pws, "API_KEY", true, "production")
                    .map(|v| v == API_KEY_2),
                prod.constant_value(&pws, "API_URL", false, "production"),
            )
        })?;

        // No value anywhere users can read without the Secrets.
        let gsc: Api<GitSyncConfig> = Api::namespaced(c.clone(), &ns);
        let aps: Api<AppSync> = Api::namespaced(c.clone(), &ns);
        let logs = support::logs();
        ensure!(
            logs.contains("tooljet_gitsync_operator"),
            "the operator's log is captured"
        );
        let seen = format!(
            "{}\n{}\n{}\n{}\n{logs}",
            serde_json::to_string(&gsc.get("sales").await?.status)?,
            serde_json::to_string(&aps.get("orders").await?.status)?,
            event_notes(c, &ns).await?,
            env.ctx.metrics.encode(),
        );
        for v in [API_KEY, API_KEY_2, DB_PASSWORD, DB_PASSWORD_2] {
            ensure!(
                !seen.contains(v),
                "{edition}: a value reached status, Events, metrics or logs"
            );
        }
    }
    Ok(())
}
