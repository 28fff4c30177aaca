//! AppSyncSet end to end: a whole workspace backed up to git by a Push set while apps come,
//! go and are renamed in ToolJet; the whole repository moved into a second ToolJet (Community
//! Edition, session login) by a Pull set that must not touch a prod app of the same name.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use tooljet_gitsync_operator::api::{AppSync, AppSyncSet, APP_SYNC_SET_LABEL};
use tooljet_gitsync_testkit::emulator::{Emulator, EmulatorConfig};
use tooljet_gitsync_testkit::gitserver::GitServer;

use crate::gitsyncconfig::{manifest, ready_config_with};
use crate::support::{self, apply, namespace, poke, trial, wait, wait_events, wait_obj, Env};

pub fn trials() -> Vec<libtest_mimic::Trial> {
    vec![
        trial(
            "set_push_backs_up_a_workspace_while_apps_come_go_and_are_renamed",
            push_set,
        ),
        trial(
            "set_pull_moves_a_workspace_into_community_edition_without_touching_prod",
            pull_set,
        ),
    ]
}

/// A Ready GitSyncConfig `sales` in `ns` for the emulator `tj`, token (EE) or session (CE).
async fn config_for(
    env: &Env,
    ns: &str,
    git: &GitServer,
    url: &str,
    tj: &Emulator,
    session: bool,
) -> Result<()> {
    let secret = "tooljet-set";
    match tj.token().filter(|_| !session) {
        Some(token) => support::secret(&env.client, ns, secret, &[("token", &token)]).await?,
        None => {
            support::secret(
                &env.client,
                ns,
                secret,
                &[
                    ("email", &tj.email().unwrap_or_default()),
                    ("password", &tj.password().unwrap_or_default()),
                ],
            )
            .await?
        }
    }
    let m = manifest("sales", url, "", "")
        .replace(&support::tooljet_url(), &tj.url())
        .replace("name: tooljet-api", &format!("name: {secret}"))
        .replace("interval: 1m", "interval: 10s");
    ready_config_with(env, ns, git, &m).await?;
    Ok(())
}

pub fn set_manifest(name: &str, direction: &str, extra: &str) -> String {
    format!(
        "apiVersion: gitsync.tooljet.io/v1alpha1\nkind: AppSyncSet\nmetadata:\n  name: {name}\nspec:\n  gitSyncConfigRef: {{ name: sales }}\n  direction: {direction}\n{extra}"
    )
}

pub async fn wait_set(
    env: &Env,
    ns: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&AppSyncSet) -> bool,
) -> Result<AppSyncSet> {
    wait_obj(&env.client, ns, name, what, Duration::from_secs(90), pred).await
}

/// (total, ready, failing) of a set's status.
pub fn counts(s: &AppSyncSet) -> (u32, u32, u32) {
    s.status
        .as_ref()
        .and_then(|st| st.apps.as_ref())
        .map(|a| (a.total, a.ready, a.failing))
        .unwrap_or_default()
}

fn ready(s: &AppSyncSet) -> Option<(String, String)> {
    s.status
        .as_ref()
        .and_then(|st| support::condition(&st.conditions, "Ready"))
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn children(env: &Env, ns: &str, set: &str) -> Result<Vec<AppSync>> {
    let api: Api<AppSync> = Api::namespaced(env.client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{APP_SYNC_SET_LABEL}={set}"));
    Ok(api
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|a| a.metadata.deletion_timestamp.is_none())
        .collect())
}

fn child_for<'a>(kids: &'a [AppSync], app_id: &str) -> Option<&'a AppSync> {
    kids.iter().find(|a| a.spec.app == format!("id:{app_id}"))
}

fn folders(git: &GitServer) -> Result<BTreeSet<String>> {
    Ok(git
        .git(
            "apps",
            &[
                "-c",
                "core.quotePath=false",
                "ls-tree",
                "-r",
                "--name-only",
                "main",
            ],
        )
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('/').map(|(f, _)| f.to_string()))
        .filter(|f| f != ".meta")
        .collect())
}

async fn push_set(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let ns = namespace(c, "set-push").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    let dev = Emulator::start(EmulatorConfig {
        page_size: 2,
        ..EmulatorConfig::default()
    })
    .await?;
    let mk = |name: &str| dev.create_app(name, None).map_err(anyhow::Error::msg);
    let orders = mk("Orders")?;
    let sales = mk("Sales Dashboard")?;
    let ete = mk("Rapport Été (v2)")?;
    let _scratch = mk("Scratch pad")?;
    let hidden = mk(".Hidden")?;
    config_for(&env, &ns, &git, &url, &dev, false).await?;
    // Every update of the branch on the server is logged: pushes are counted there.
    git.git("apps", &["config", "core.logAllRefUpdates", "always"])?;

    apply::<AppSyncSet>(
        c,
        &ns,
        &set_manifest(
            "backup",
            "Push",
            "  apps: { exclude: [\"Scratch *\"] }\n  template:\n    push: { commitMessage: Backup }\n",
        ),
    )
    .await?;
    // Four selected apps; the one whose name git cannot hold is failing with its reason.
    let s = wait_set(&env, &ns, "backup", "4 apps, 3 Ready, 1 failing", |s| {
        counts(s) == (4, 3, 1)
    })
    .await?;
    let st = s.status.clone().context("status")?;
    let apps = st.apps.clone().context("apps")?;
    ensure!(
        apps.failing_apps.len() == 1
            && apps.failing_apps[0].name == ".Hidden"
            && apps.failing_apps[0].reason.as_deref() == Some("AppNameRefused"),
        "{apps:?}"
    );
    ensure!(
        ready(&s) == Some(("False".into(), "AppsNotReady".into())),
        "{:?}",
        st.conditions
    );
    ensure!(
        folders(&git)?
            == BTreeSet::from([
                "Orders".into(),
                "Sales Dashboard".into(),
                "Rapport Été (v2)".into()
            ]),
        "{:?}",
        folders(&git)?
    );
    let kids = children(&env, &ns, "backup").await?;
    ensure!(kids.len() == 4, "{}", kids.len());
    for k in &kids {
        let n = k.name_any();
        ensure!(
            n.len() <= 63
                && n.starts_with("backup-")
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{n}"
        );
        ensure!(
            k.spec
                .push
                .as_ref()
                .and_then(|p| p.commit_message.as_deref())
                == Some("Backup")
        );
    }
    let ete_child = child_for(&kids, &ete.id).context("child of Rapport Été")?;
    ensure!(
        ete_child.name_any().starts_with("backup-rapport-t-v2-"),
        "{}",
        ete_child.name_any()
    );
    let orders_child = child_for(&kids, &orders.id)
        .context("child of Orders")?
        .name_any();
    let hidden_child = child_for(&kids, &hidden.id)
        .context("child of .Hidden")?
        .name_any();
    ensure!(hidden_child.starts_with("backup-hidden-"), "{hidden_child}");
    wait_events(c, &ns, "backup", &["AppAdded"]).await?;
    let commits = git.git("apps", &["rev-list", "--count", "main"])?;
    let pushes = git
        .git(
            "apps",
            &["reflog", "show", "--format=%H", "refs/heads/main"],
        )
        .unwrap_or_default()
        .lines()
        .count();
    eprintln!(
        "first backup: {} commits in {pushes} pushes",
        commits.trim()
    );

    // A new app gets its AppSync within one interval; a renamed app keeps its AppSync and
    // its folder follows; a deleted app loses its AppSync and keeps its folder in git.
    let inventory = mk("Inventory")?;
    ensure!(dev.rename_app(&orders.id, "Orders EU"));
    ensure!(dev.delete_app(&sales.id));
    wait_set(
        &env,
        &ns,
        "backup",
        "Inventory added, Sales Dashboard removed",
        |s| counts(s) == (4, 3, 1) && s.status.as_ref().and_then(|st| st.apps.as_ref()).is_some(),
    )
    .await?;
    let kids = wait(Duration::from_secs(60), || async {
        let kids = children(&env, &ns, "backup").await.ok()?;
        let done =
            child_for(&kids, &inventory.id).is_some() && child_for(&kids, &sales.id).is_none();
        done.then_some(kids)
    })
    .await
    .context("Inventory's AppSync created and Sales Dashboard's deleted")?;
    ensure!(
        child_for(&kids, &orders.id).map(ResourceExt::name_any) == Some(orders_child.clone()),
        "the renamed app keeps its AppSync"
    );
    wait(Duration::from_secs(60), || async {
        let f = folders(&git).ok()?;
        (f.contains("Orders EU") && f.contains("Inventory") && !f.contains("Orders")).then_some(())
    })
    .await
    .context("git holds the renamed folder and the new app")?;
    ensure!(
        folders(&git)?.contains("Sales Dashboard"),
        "nothing deleted in git"
    );
    wait_events(c, &ns, "backup", &["AppRemoved"]).await?;

    // A hand edit of a generated AppSync is reverted.
    let aps: Api<AppSync> = Api::namespaced(c.clone(), &ns);
    let patch =
        serde_json::json!({"spec": {"push": {"commitMessage": "hand edit", "version": "v9"}}});
    aps.patch(
        &orders_child,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    wait_obj(
        c,
        &ns,
        &orders_child,
        "the hand edit reverted",
        Duration::from_secs(30),
        |a: &AppSync| {
            a.spec.push.as_ref().is_some_and(|p| {
                p.commit_message.as_deref() == Some("Backup") && p.version.is_none()
            })
        },
    )
    .await?;

    // A hand-written AppSync for an app wins: the generated one goes, the overlap is reported.
    apply::<AppSync>(
        c,
        &ns,
        &support::appsync_manifest("orders-by-hand", "Orders EU", "Push", ""),
    )
    .await?;
    let s = wait_set(&env, &ns, "backup", "overlap reported", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.apps.as_ref())
            .is_some_and(|a| a.overlapping.iter().any(|e| e.app_sync == "orders-by-hand"))
    })
    .await?;
    ensure!(counts(&s).0 == 4, "{:?}", counts(&s));
    wait(Duration::from_secs(30), || async {
        aps.get_opt(&orders_child)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await
    .context("the generated AppSync of the overlapped app is deleted")?;
    wait_events(c, &ns, "backup", &["AppSyncOverlap"]).await?;

    // Suspended: the generated AppSyncs are suspended, nothing is created.
    let sets: Api<AppSyncSet> = Api::namespaced(c.clone(), &ns);
    let suspend = |on: bool| serde_json::json!({"spec": {"suspend": on}});
    sets.patch(
        "backup",
        &PatchParams::default(),
        &Patch::Merge(&suspend(true)),
    )
    .await?;
    let _late = mk("Late app")?;
    wait(Duration::from_secs(30), || async {
        let kids = children(&env, &ns, "backup").await.ok()?;
        kids.iter().all(|k| k.spec.suspend).then_some(())
    })
    .await
    .context("children suspended")?;
    tokio::time::sleep(Duration::from_secs(11)).await;
    ensure!(
        children(&env, &ns, "backup").await?.len() == 3,
        "no AppSync generated while suspended"
    );
    let s = sets.get("backup").await?;
    ensure!(
        ready(&s).map(|r| r.1) == Some("Suspended".into()),
        "{:?}",
        ready(&s)
    );

    // Deleting the set deletes its AppSyncs only: git and ToolJet stay as they are.
    let head = git.git("apps", &["rev-parse", "main"])?;
    let apps_before = dev.apps().len();
    sets.delete("backup", &DeleteParams::default()).await?;
    wait(Duration::from_secs(60), || async {
        let gone = sets.get_opt("backup").await.ok()?.is_none();
        let kids = aps.list(&ListParams::default()).await.ok()?;
        let left: Vec<String> = kids.items.iter().map(ResourceExt::name_any).collect();
        (gone && left == ["orders-by-hand"]).then_some(())
    })
    .await
    .context("the set and its AppSyncs are gone; the hand-written one stays")?;
    ensure!(
        git.git("apps", &["rev-parse", "main"])? == head,
        "git untouched"
    );
    ensure!(dev.apps().len() == apps_before, "ToolJet untouched");
    poke::<AppSync>(c, &ns, "orders-by-hand").await?;
    Ok(())
}

async fn pull_set(env: Arc<Env>) -> Result<()> {
    let c = &env.client;
    let dev_ns = namespace(c, "set-pull-dev").await?;
    let prod_ns = namespace(c, "set-pull-prod").await?;
    let git = GitServer::start()?;
    let url = git.create_repo("apps")?;
    // Dev logs in with a session this time: the set lists the apps page by page.
    let dev = Emulator::start(EmulatorConfig {
        page_size: 2,
        ..EmulatorConfig::default()
    })
    .await?;
    let names = [
        "Orders",
        "Sales Dashboard",
        "Inventory",
        "Rapport Été",
        "HR Portal",
    ];
    for n in names {
        dev.create_app(n, None).map_err(anyhow::Error::msg)?;
    }
    config_for(&env, &dev_ns, &git, &url, &dev, true).await?;
    apply::<AppSyncSet>(c, &dev_ns, &set_manifest("backup", "Push", "")).await?;
    wait_set(&env, &dev_ns, "backup", "all 5 pushed", |s| {
        counts(s) == (5, 5, 0)
    })
    .await?;

    // Prod: Community Edition (session login), with an app of its own called "Orders".
    let prod = Emulator::start(EmulatorConfig {
        community: true,
        page_size: 2,
        ..EmulatorConfig::default()
    })
    .await?;
    let theirs = prod
        .create_app("Orders", None)
        .map_err(anyhow::Error::msg)?;
    let theirs_before = prod.export_of(&theirs.id).context("prod Orders")?;
    config_for(&env, &prod_ns, &git, &url, &prod, true).await?;
    apply::<AppSyncSet>(
        c,
        &prod_ns,
        &set_manifest(
            "release",
            "Pull",
            "  template:\n    pull: { revision: main, updatePolicy: Manual }\n",
        ),
    )
    .await?;
    let s = wait_set(
        &env,
        &prod_ns,
        "release",
        "4 imported, Orders in conflict",
        |s| counts(s) == (5, 4, 1),
    )
    .await?;
    let apps = s.status.clone().and_then(|st| st.apps).context("apps")?;
    ensure!(
        apps.failing_apps.len() == 1
            && apps.failing_apps[0].name == "Orders"
            && apps.failing_apps[0].reason.as_deref() == Some("NameConflict"),
        "{apps:?}"
    );
    ensure!(
        s.status
            .as_ref()
            .and_then(|st| st.revision.clone())
            .is_some(),
        "revision read"
    );
    let in_prod: BTreeSet<String> = prod.apps().into_iter().map(|a| a.name).collect();
    ensure!(
        in_prod == names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>(),
        "{in_prod:?}"
    );
    ensure!(
        prod.apps().iter().filter(|a| a.name == "Orders").count() == 1
            && prod.export_of(&theirs.id) == Some(theirs_before),
        "prod's own Orders untouched"
    );
    // An app leaves the selection: after a grace its AppSync goes, the app stays in prod,
    // and the set remembers it imported it. Back in the selection, the new AppSync owns it
    // again (no NameConflict with its own import).
    let sets: Api<AppSyncSet> = Api::namespaced(c.clone(), &prod_ns);
    let inventory = prod
        .apps()
        .into_iter()
        .find(|a| a.name == "Inventory")
        .context("Inventory imported")?;
    let exclude = |on: bool| {
        let list: Vec<&str> = if on { vec!["Inventory"] } else { vec![] };
        serde_json::json!({"spec": {"apps": {"exclude": list}}})
    };
    sets.patch(
        "release",
        &PatchParams::default(),
        &Patch::Merge(&exclude(true)),
    )
    .await?;
    let s = wait_set(
        &env,
        &prod_ns,
        "release",
        "Inventory's AppSync gone, app remembered",
        |s| {
            counts(s) == (4, 3, 1)
                && s.status
                    .as_ref()
                    .is_some_and(|st| st.released.iter().any(|r| r.app_id == inventory.id))
        },
    )
    .await?;
    ensure!(
        prod.app(&inventory.id).is_some(),
        "nothing deleted in ToolJet: {:?}",
        s.status
    );
    sets.patch(
        "release",
        &PatchParams::default(),
        &Patch::Merge(&exclude(false)),
    )
    .await?;
    wait_set(&env, &prod_ns, "release", "Inventory owned again", |s| {
        counts(s) == (5, 4, 1) && s.status.as_ref().is_some_and(|st| st.released.is_empty())
    })
    .await?;
    let kids = children(&env, &prod_ns, "release").await?;
    let again = kids
        .iter()
        .find(|k| {
            k.annotations()
                .get("gitsync.tooljet.io/app-name")
                .map(String::as_str)
                == Some("Inventory")
        })
        .context("Inventory's new AppSync")?;
    ensure!(
        again
            .status
            .as_ref()
            .and_then(|st| st.owned.as_ref())
            .and_then(|o| o.app_id.clone())
            == Some(inventory.id.clone()),
        "the same app, not replaced: {:?}",
        again.status
    );
    ensure!(prod.app(&inventory.id).is_some());

    // Nothing changes any more: the AppSyncs keep re-checking, the set's status is not
    // written again.
    let before = sets.get("release").await?.resource_version();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = sets.get("release").await?;
    ensure!(
        after.resource_version() == before,
        "the set was written although nothing changed: {:?}",
        after.status
    );
    Ok(())
}
