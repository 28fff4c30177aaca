//! Workspace constants and data-source credentials from Secrets and ConfigMaps (design §9):
//! ToolJet's exports carry neither, so an app pulled into a workspace breaks until someone
//! types them in. A GitSyncConfig's pass keeps them in its workspace; what was written is
//! remembered as hashes in a Secret the operator owns (ToolJet never returns secret values,
//! and a hash of a password in `status` would be readable by anyone who may read the config),
//! so an unchanged source causes no write. Values never reach logs, Events, status or errors.

pub mod plan;
mod store;

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use secrecy::SecretString;

use super::connection::Connection;
use super::report::Note;
use super::{Context, Error};
use crate::api::{
    self, Condition, ConstantSource, GitSyncConfig, ManagedConstant, ManagedDataSource, Reason,
    ValuesStatus,
};
use crate::tooljet::{merge_options, ConstantKind, Error as ToolJetError};
use plan::{AppliedValue, Present, SourceKey, Write};
use store::{read_secret, read_source, read_state, write_state, State, Stored};
pub use store::{state_secret_name, STATE_FOR_LABEL};

/// Condition type of a GitSyncConfig that declares constants or data sources.
pub const VALUES_APPLIED: &str = "ValuesApplied";
/// Most names listed in status.
const MAX_LISTED: usize = 200;

/// The outcome of a pass over the declared values.
#[derive(Default)]
pub struct Applied {
    /// For status.
    pub status: Option<ValuesStatus>,
    /// The `ValuesApplied` condition; `None` when nothing is declared.
    pub condition: Option<Condition>,
    /// Events.
    pub notes: Vec<Note>,
}

/// Whether the GitSyncConfig reads Secret (`secret`) or ConfigMap `name`.
pub fn references(gsc: &GitSyncConfig, secret: bool, name: &str) -> bool {
    let t = &gsc.spec.tooljet;
    let in_constants = t.constants.iter().any(|c| {
        let r = if secret {
            c.secret_ref.as_ref()
        } else {
            c.config_map_ref.as_ref()
        };
        r.is_some_and(|r| r.name == name)
    });
    let in_sources = secret
        && t.data_sources
            .iter()
            .any(|d| d.options_from.secret_ref.name == name);
    in_constants || in_sources
}

fn source_id(c: &ConstantSource) -> Option<String> {
    match (&c.secret_ref, &c.config_map_ref) {
        (Some(s), None) => Some(format!("secret/{}", s.name)),
        (None, Some(m)) => Some(format!("configmap/{}", m.name)),
        _ => None,
    }
}

fn failed(reason: Reason, message: String) -> Applied {
    Applied {
        status: None,
        condition: Some(Condition::new(
            VALUES_APPLIED,
            false,
            reason,
            message.clone(),
        )),
        notes: vec![Note::warning(reason, message)],
    }
}

/// Keeps the declared constants and data-source credentials in the workspace.
pub async fn apply(
    gsc: &GitSyncConfig,
    ctx: &Context,
    conn: &Connection,
    prev: Option<&Condition>,
) -> Result<Applied, Error> {
    let spec = &gsc.spec.tooljet;
    if spec.constants.is_empty() && spec.data_sources.is_empty() {
        return Ok(Applied::default());
    }
    if conn.client.auth_mode() == "token" {
        return Ok(quiet_if_same(prev, failed(
            Reason::ConstantsNeedSession,
            "spec.tooljet.constants and dataSources need session credentials: ToolJet's External API has no route for workspace constants or data-source options. Give the credentials Secret the keys `email` and `password` of a ToolJet admin (or a user allowed to manage constants and data sources) instead of `token`".into(),
        )));
    }
    let ns = gsc.namespace().unwrap_or_default();
    let mut problems: Vec<(Reason, String)> = Vec::new();

    // The sources.
    let mut keys: Vec<SourceKey> = Vec::new();
    let mut pruning: BTreeSet<String> = BTreeSet::new();
    let mut asked_per_env = false;
    for (i, c) in spec.constants.iter().enumerate() {
        let Some(id) = source_id(c) else {
            problems.push((
                Reason::InvalidSpec,
                format!(
                    "spec.tooljet.constants[{i}] needs exactly one of secretRef and configMapRef"
                ),
            ));
            continue;
        };
        let data = match read_source(ctx, &ns, c).await? {
            Some(d) => d,
            None => {
                problems.push((Reason::ValuesSourceNotFound, format!("spec.tooljet.constants[{i}]: {} not found in namespace {ns}; create it, or remove the entry", id.replacen('/', " ", 1))));
                continue;
            }
        };
        if c.prune {
            pruning.insert(id.clone());
        }
        asked_per_env |= c.environment.is_some();
        for (key, value) in data {
            let kind = if c.global.iter().any(|g| g == &key) {
                ConstantKind::Global
            } else {
                ConstantKind::Secret
            };
            keys.push(SourceKey {
                source: id.clone(),
                key,
                value,
                kind,
                // Empty: every environment, filled in once they are listed.
                environments: c.environment.iter().cloned().collect(),
            });
        }
    }
    let client = &conn.client;
    let ws = &conn.workspace;
    let envs: BTreeMap<String, String> = match client.list_environments(ws).await {
        Ok(list) => list.into_iter().map(|e| (e.name, e.id)).collect(),
        Err(e) => {
            return Ok(tooljet_failed(
                prev,
                "listing the workspace's environments",
                &e,
            ))
        }
    };
    for k in &mut keys {
        if k.environments.is_empty() {
            k.environments = envs.keys().cloned().collect();
        }
    }
    let (mut state, state_secret) = match read_state(ctx, gsc).await? {
        Stored::Found(state, secret) => (state, secret),
        Stored::Taken(name) => {
            return Ok(quiet_if_same(prev, failed(
                Reason::ValuesFailed,
                format!("Secret {name} in namespace {ns} is where the operator keeps what it wrote to ToolJet, but it is not the operator's (no {STATE_FOR_LABEL} label): nothing was written. Rename or delete that Secret"),
            )))
        }
    };
    let before = state.clone();

    // Constants.
    let mut look_in: BTreeSet<String> = keys.iter().flat_map(|k| k.environments.clone()).collect();
    for sk in state.constants.keys() {
        if let Some(env) = sk.splitn(3, '/').nth(2) {
            look_in.insert(env.to_string());
        }
    }
    let mut present: BTreeMap<String, Vec<Present>> = BTreeMap::new();
    for (env, id) in look_in.iter().filter_map(|e| envs.get(e).map(|id| (e, id))) {
        match client.constants_in_environment(ws, id).await {
            Ok(list) => {
                present.insert(
                    env.clone(),
                    list.into_iter()
                        .map(|c| Present {
                            id: c.id,
                            name: c.name,
                            kind: c.kind,
                        })
                        .collect(),
                );
            }
            Err(e) => {
                return Ok(tooljet_failed(
                    prev,
                    &format!("reading the constants of environment {env}"),
                    &e,
                ))
            }
        }
    }
    let p = plan::plan_constants(&keys, &envs, &present, &state.constants, &pruning);
    let mut done: Vec<String> = Vec::new();
    for w in &p.writes {
        let r = write_constant(conn, w, &mut state).await;
        match r {
            Ok(what) => done.push(what),
            Err(e) => problems.push((Reason::ValuesFailed, format!("{}: {}", describe(w), e))),
        }
    }
    if !p.refused.is_empty() {
        problems.push((
            Reason::InvalidConstant,
            format!(
                "not sent, ToolJet would refuse them: {}",
                p.refused.join("; ")
            ),
        ));
    }

    // Data sources.
    let mut managed_ds: Vec<ManagedDataSource> = Vec::new();
    if !spec.data_sources.is_empty() {
        let listed = match client.list_data_sources(ws).await {
            Ok(l) => l,
            Err(e) => {
                return Ok(tooljet_failed(
                    prev,
                    "listing the workspace's data sources",
                    &e,
                ))
            }
        };
        // Forget data sources that no longer exist (one an import replaced has a new id).
        state.data_sources.retain(|k, _| {
            k.split('/')
                .next()
                .is_some_and(|id| listed.iter().any(|d| d.id == id))
        });
        for (i, d) in spec.data_sources.iter().enumerate() {
            asked_per_env |= d.environment.is_some();
            let target: Vec<String> = match &d.environment {
                Some(e) => vec![e.clone()],
                None => envs.keys().cloned().collect(),
            };
            let secret_name = &d.options_from.secret_ref.name;
            let Some(options) = read_secret(ctx, &ns, secret_name).await? else {
                problems.push((Reason::ValuesSourceNotFound, format!("spec.tooljet.dataSources[{i}] ({}): Secret {secret_name} not found in namespace {ns}", d.name)));
                continue;
            };
            let mut entry = ManagedDataSource {
                name: d.name.clone(),
                environments: target.clone(),
                options: options.iter().map(|(k, _)| k.clone()).collect(),
                state: "Waiting".into(),
            };
            let Some(ds) = listed.iter().find(|x| x.name == d.name) else {
                managed_ds.push(entry);
                continue;
            };
            let mut all_ok = true;
            for env in &target {
                let Some(env_id) = envs.get(env) else {
                    problems.push((Reason::InvalidSpec, format!("spec.tooljet.dataSources[{i}] ({}): ToolJet has no environment {env:?}", d.name)));
                    all_ok = false;
                    continue;
                };
                let sk = plan::data_source_key(&ds.id, env);
                let hash = plan::options_hash(&sk, &options);
                if state.data_sources.get(&sk) == Some(&hash) {
                    continue;
                }
                match write_options(conn, &ds.id, env_id, &options).await {
                    Ok(()) => {
                        state.data_sources.insert(sk, hash);
                        done.push(format!("credentials of data source {} ({env})", d.name));
                    }
                    Err(e) => {
                        all_ok = false;
                        problems.push((
                            Reason::ValuesFailed,
                            format!(
                                "writing the credentials of data source {} ({env}): {e}",
                                d.name
                            ),
                        ));
                    }
                }
            }
            if all_ok {
                entry.state = "Applied".into();
            }
            managed_ds.push(entry);
        }
    }
    if state != before {
        write_state(ctx, gsc, &state, state_secret).await?;
    }

    let mut constants: Vec<ManagedConstant> = Vec::new();
    for k in &keys {
        if constants
            .iter()
            .any(|c| c.name == k.key && c.kind == k.kind.as_tooljet())
        {
            continue;
        }
        constants.push(ManagedConstant {
            name: k.key.clone(),
            kind: k.kind.as_tooljet().into(),
            environments: k.environments.clone(),
        });
    }
    constants.truncate(MAX_LISTED);
    let status = ValuesStatus {
        constants,
        data_sources: managed_ds,
        refused: p.refused.iter().take(50).cloned().collect(),
        note: asked_per_env.then(|| "a per-environment value is written to that environment only by ToolJet Enterprise (multi-environment licence); a Community Edition ToolJet writes every value to all environments".to_string()),
    };
    let mut notes = Vec::new();
    if !done.is_empty() {
        notes.push(Note::normal(
            Reason::ValuesApplied,
            api::bounded(
                format!("wrote to workspace {}: {}", ws.name, done.join(", ")),
                1000,
            ),
        ));
    }
    let condition = match problems.first() {
        None => Condition::new(
            VALUES_APPLIED,
            true,
            Reason::ValuesApplied,
            format!(
                "{} constants ({} written now) and {} data sources kept in workspace {}",
                status.constants.len(),
                p.writes.len(),
                status.data_sources.len(),
                ws.name
            ),
        ),
        Some((reason, _)) => {
            let message = problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            let changed = prev.is_none_or(|c| c.reason != reason.as_str() || c.status != "False");
            if changed {
                notes.push(Note::warning(*reason, api::bounded(message.clone(), 1000)));
            }
            Condition::new(VALUES_APPLIED, false, *reason, message)
        }
    };
    Ok(Applied {
        status: Some(status),
        condition: Some(condition),
        notes,
    })
}

/// A failure repeated pass after pass is one Event, not one per pass.
fn quiet_if_same(prev: Option<&Condition>, mut a: Applied) -> Applied {
    if let (Some(p), Some(c)) = (prev, a.condition.as_ref()) {
        if p.reason == c.reason && p.status == c.status {
            a.notes.clear();
        }
    }
    a
}

fn tooljet_failed(prev: Option<&Condition>, what: &str, e: &ToolJetError) -> Applied {
    quiet_if_same(
        prev,
        failed(
            Reason::ValuesFailed,
            format!("{what} failed: {e}; nothing more was written this pass, retried at the next"),
        ),
    )
}

fn describe(w: &Write) -> String {
    match w {
        Write::Create {
            name, env_names, ..
        } => {
            format!("creating constant {name} ({})", env_names.join(", "))
        }
        Write::Update { name, env_name, .. } => format!("updating constant {name} ({env_name})"),
        Write::Delete { name, .. } => format!("deleting constant {name}"),
    }
}

async fn write_constant(
    conn: &Connection,
    w: &Write,
    state: &mut State,
) -> Result<String, ToolJetError> {
    let (client, ws) = (&conn.client, &conn.workspace);
    match w {
        Write::Create {
            name,
            kind,
            env_names,
            env_ids,
            value,
            source,
        } => {
            client
                .create_constant(ws, name, *kind, value, env_ids)
                .await?;
            for env in env_names {
                let sk = plan::constant_key(*kind, name, env);
                state.constants.insert(
                    sk.clone(),
                    AppliedValue {
                        hash: plan::value_hash(&sk, value),
                        created: true,
                        source: source.clone(),
                    },
                );
            }
            Ok(format!("created constant {name}"))
        }
        Write::Update {
            id,
            name,
            kind,
            env_name,
            env_id,
            value,
            source,
        } => {
            client.update_constant(ws, id, value, env_id).await?;
            let sk = plan::constant_key(*kind, name, env_name);
            let created = state.constants.get(&sk).is_some_and(|a| a.created);
            state.constants.insert(
                sk.clone(),
                AppliedValue {
                    hash: plan::value_hash(&sk, value),
                    created,
                    source: source.clone(),
                },
            );
            Ok(format!("updated constant {name} ({env_name})"))
        }
        Write::Delete {
            id,
            name,
            state_keys,
            env_id,
        } => {
            match client.delete_constant(ws, id, env_id.as_deref()).await {
                Ok(()) | Err(ToolJetError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            for sk in state_keys {
                state.constants.remove(sk);
            }
            Ok(format!("deleted constant {name}"))
        }
    }
}

/// Reads the data source's options in the environment, sets the secret ones, and writes the
/// whole list back (ToolJet replaces the stored options by exactly what is sent).
async fn write_options(
    conn: &Connection,
    ds_id: &str,
    env_id: &str,
    secrets: &[(String, SecretString)],
) -> Result<(), ToolJetError> {
    let (client, ws) = (&conn.client, &conn.workspace);
    let current = client.data_source_options(ws, ds_id, env_id).await?;
    let Some(options) = merge_options(&current, secrets, true) else {
        return Ok(());
    };
    client
        .update_data_source_options(ws, ds_id, env_id, &options)
        .await
}
