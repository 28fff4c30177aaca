//! What to write to ToolJet for the constants and data-source credentials a GitSyncConfig
//! declares, without IO: from the sources' keys, what the workspace shows (ids, never secret
//! values) and what was applied before (hashes, in the operator's state Secret).

use std::collections::{BTreeMap, BTreeSet};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::tooljet::{check_constant_name, check_constant_value, ConstantKind};

/// One value read from a source (a key of a Secret or ConfigMap).
#[derive(Clone, Debug)]
pub struct SourceKey {
    /// `secret/<name>` or `configmap/<name>`, as the state records it.
    pub source: String,
    /// The key: the constant's name.
    pub key: String,
    /// The value.
    pub value: SecretString,
    /// Global (listed in `global`) or Secret.
    pub kind: ConstantKind,
    /// Environment names this key is kept in.
    pub environments: Vec<String>,
}

/// What was applied for one constant in one environment.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedValue {
    /// Hash of what was written last.
    pub hash: String,
    /// The operator created the constant (so it may delete it when its source says so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
    /// The source it came from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// The state key of a constant in an environment.
pub fn constant_key(kind: ConstantKind, name: &str, env: &str) -> String {
    format!("{}/{name}/{env}", kind.as_tooljet())
}

/// The state key of a data source's credentials in an environment (by data-source id: a data
/// source an import made anew has no credentials, whatever was written to its predecessor).
pub fn data_source_key(id: &str, env: &str) -> String {
    format!("{id}/{env}")
}

/// A hash of a value written for `what` (so it never matches another key's equal value).
pub fn value_hash(what: &str, value: &SecretString) -> String {
    let mut h = Sha256::new();
    h.update(what.as_bytes());
    h.update([0]);
    h.update(value.expose_secret().as_bytes());
    hex(&h.finalize())
}

/// A hash of a data source's secret options (sorted by key).
pub fn options_hash(what: &str, options: &[(String, SecretString)]) -> String {
    let mut sorted: Vec<&(String, SecretString)> = options.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = Sha256::new();
    h.update(what.as_bytes());
    for (k, v) in sorted {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.expose_secret().as_bytes());
    }
    hex(&h.finalize())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A constant as the workspace shows it in one environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Present {
    /// Its id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: ConstantKind,
}

/// One write.
#[derive(Clone, Debug)]
pub enum Write {
    /// Create `name` in these environments (ids) with `value`.
    Create {
        /// Constant name.
        name: String,
        /// Kind.
        kind: ConstantKind,
        /// Environment names (for the state).
        env_names: Vec<String>,
        /// Environment ids.
        env_ids: Vec<String>,
        /// Value.
        value: SecretString,
        /// The source.
        source: String,
    },
    /// Set the value of constant `id` in one environment.
    Update {
        /// Constant id.
        id: String,
        /// Constant name.
        name: String,
        /// Kind.
        kind: ConstantKind,
        /// Environment name.
        env_name: String,
        /// Environment id.
        env_id: String,
        /// Value.
        value: SecretString,
        /// The source.
        source: String,
    },
    /// Delete constant `id` (it was created here and its key left a source that prunes): in
    /// one environment while other environments still want it, else the whole constant (a
    /// Community Edition only blanks a value deleted for one environment).
    Delete {
        /// Constant id.
        id: String,
        /// Constant name.
        name: String,
        /// State keys it clears.
        state_keys: Vec<String>,
        /// Environment id; `None`: the whole constant.
        env_id: Option<String>,
    },
}

/// The plan for the constants.
#[derive(Debug, Default)]
pub struct ConstantsPlan {
    /// Writes, in order.
    pub writes: Vec<Write>,
    /// Keys not sent, with why (names only).
    pub refused: Vec<String>,
    /// State keys whose constant is as wanted (no write).
    pub unchanged: usize,
}

/// Plans the constant writes. `present` maps environment name to what ToolJet shows there;
/// `envs` maps environment name to id; `pruning` lists the sources that delete what they
/// created when a key leaves them; `state` is what was applied before. Pure.
pub fn plan_constants(
    keys: &[SourceKey],
    envs: &BTreeMap<String, String>,
    present: &BTreeMap<String, Vec<Present>>,
    state: &BTreeMap<String, AppliedValue>,
    pruning: &BTreeSet<String>,
) -> ConstantsPlan {
    let mut plan = ConstantsPlan::default();
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    // Creates of one (name, kind, value) across environments go in one request: a Community
    // Edition writes every environment on the first and refuses a second as a duplicate.
    let mut creates: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    for k in keys {
        if let Err(e) =
            check_constant_name(&k.key).and_then(|_| check_constant_value(&k.key, &k.value))
        {
            plan.refused.push(format!("{} ({}): {e}", k.key, k.source));
            continue;
        }
        for env in &k.environments {
            let Some(env_id) = envs.get(env) else {
                plan.refused.push(format!(
                    "{} ({}): ToolJet has no environment {env:?} (it has: {})",
                    k.key,
                    k.source,
                    envs.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
                continue;
            };
            let state_key = constant_key(k.kind, &k.key, env);
            wanted.insert(state_key.clone());
            let hash = value_hash(&state_key, &k.value);
            let existing = present
                .get(env)
                .and_then(|p| p.iter().find(|c| c.name == k.key && c.kind == k.kind));
            match existing {
                Some(c) => {
                    if state.get(&state_key).is_some_and(|a| a.hash == hash) {
                        plan.unchanged += 1;
                        continue;
                    }
                    plan.writes.push(Write::Update {
                        id: c.id.clone(),
                        name: k.key.clone(),
                        kind: k.kind,
                        env_name: env.clone(),
                        env_id: env_id.clone(),
                        value: k.value.clone(),
                        source: k.source.clone(),
                    });
                }
                None => {
                    let group = (
                        format!("{}\0{}", k.key, value_hash("", &k.value)),
                        k.kind.as_tooljet(),
                    );
                    match creates.get(&group) {
                        Some(&i) => {
                            if let Some(Write::Create {
                                env_names, env_ids, ..
                            }) = plan.writes.get_mut(i)
                            {
                                env_names.push(env.clone());
                                env_ids.push(env_id.clone());
                            }
                        }
                        None => {
                            creates.insert(group, plan.writes.len());
                            plan.writes.push(Write::Create {
                                name: k.key.clone(),
                                kind: k.kind,
                                env_names: vec![env.clone()],
                                env_ids: vec![env_id.clone()],
                                value: k.value.clone(),
                                source: k.source.clone(),
                            });
                        }
                    }
                }
            }
        }
    }
    // Pruning: only what this operator created, from a source that says so, whose key left it.
    let mut deletes: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    for (state_key, applied) in state {
        if wanted.contains(state_key) || !applied.created || !pruning.contains(&applied.source) {
            continue;
        }
        let mut parts = state_key.splitn(3, '/');
        let (Some(kind), Some(name), Some(env)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let kind = if kind == "Secret" {
            ConstantKind::Secret
        } else {
            ConstantKind::Global
        };
        let (Some(env_id), Some(c)) = (
            envs.get(env),
            present
                .get(env)
                .and_then(|p| p.iter().find(|c| c.name == name && c.kind == kind)),
        ) else {
            continue;
        };
        deletes
            .entry((c.id.clone(), name.to_string()))
            .or_default()
            .push((state_key.clone(), env_id.clone()));
    }
    for ((id, name), entries) in deletes {
        let kinds = [ConstantKind::Global, ConstantKind::Secret];
        let still_wanted = wanted.iter().any(|w| {
            kinds
                .iter()
                .any(|k| w.starts_with(&format!("{}/{name}/", k.as_tooljet())))
                && entries.iter().all(|(sk, _)| sk != w)
        });
        if still_wanted {
            for (sk, env_id) in entries {
                plan.writes.push(Write::Delete {
                    id: id.clone(),
                    name: name.clone(),
                    state_keys: vec![sk],
                    env_id: Some(env_id),
                });
            }
        } else {
            plan.writes.push(Write::Delete {
                id,
                name,
                state_keys: entries.into_iter().map(|(sk, _)| sk).collect(),
                env_id: None,
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envs() -> BTreeMap<String, String> {
        [("development", "d"), ("staging", "s"), ("production", "p")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn key(k: &str, v: &str, kind: ConstantKind, envs: &[&str]) -> SourceKey {
        SourceKey {
            source: "secret/prod".into(),
            key: k.into(),
            value: SecretString::from(v.to_string()),
            kind,
            environments: envs.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn names(p: &ConstantsPlan) -> Vec<String> {
        p.writes
            .iter()
            .map(|w| match w {
                Write::Create { name, env_ids, .. } => format!("create {name} {env_ids:?}"),
                Write::Update { name, env_id, .. } => format!("update {name} {env_id}"),
                Write::Delete { name, env_id, .. } => format!("delete {name} {env_id:?}"),
            })
            .collect()
    }

    #[test]
    fn missing_constants_are_created_once_for_all_their_environments() {
        let keys = [
            key(
                "API_KEY",
                "k1",
                ConstantKind::Secret,
                &["development", "staging", "production"],
            ),
            key(
                "API_URL",
                "https://x",
                ConstantKind::Global,
                &["production"],
            ),
        ];
        let p = plan_constants(
            &keys,
            &envs(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &BTreeSet::new(),
        );
        assert_eq!(
            names(&p),
            [
                "create API_KEY [\"d\", \"s\", \"p\"]",
                "create API_URL [\"p\"]"
            ]
        );
        assert!(p.refused.is_empty());
    }

    #[test]
    fn an_unchanged_value_is_not_written_a_changed_one_is() {
        let keys = [key("API_KEY", "k1", ConstantKind::Secret, &["production"])];
        let present: BTreeMap<String, Vec<Present>> = [(
            "production".to_string(),
            vec![Present {
                id: "c1".into(),
                name: "API_KEY".into(),
                kind: ConstantKind::Secret,
            }],
        )]
        .into();
        let sk = constant_key(ConstantKind::Secret, "API_KEY", "production");
        let mut state: BTreeMap<String, AppliedValue> = [(
            sk.clone(),
            AppliedValue {
                hash: value_hash(&sk, &SecretString::from("k1")),
                created: true,
                source: "secret/prod".into(),
            },
        )]
        .into();
        let p = plan_constants(&keys, &envs(), &present, &state, &BTreeSet::new());
        assert!(p.writes.is_empty() && p.unchanged == 1);
        state.get_mut(&sk).unwrap().hash = "old".into();
        let p = plan_constants(&keys, &envs(), &present, &state, &BTreeSet::new());
        assert_eq!(names(&p), ["update API_KEY p"]);
        // Unknown state (a constant made by hand): written once, then known.
        let p = plan_constants(&keys, &envs(), &present, &BTreeMap::new(), &BTreeSet::new());
        assert_eq!(names(&p), ["update API_KEY p"]);
        // A Global of the same name is another constant.
        let global = [key("API_KEY", "k1", ConstantKind::Global, &["production"])];
        let p = plan_constants(&global, &envs(), &present, &state, &BTreeSet::new());
        assert_eq!(names(&p), ["create API_KEY [\"p\"]"]);
    }

    #[test]
    fn refused_keys_are_named_never_sent_and_never_show_their_value() {
        let keys = [
            key(
                "db-host",
                "secret-value-1",
                ConstantKind::Secret,
                &["production"],
            ),
            key("EMPTY", "", ConstantKind::Secret, &["production"]),
            key("OK", "v", ConstantKind::Secret, &["prod"]),
        ];
        let p = plan_constants(
            &keys,
            &envs(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &BTreeSet::new(),
        );
        assert!(p.writes.is_empty());
        assert_eq!(p.refused.len(), 3, "{:?}", p.refused);
        let text = p.refused.join("\n");
        assert!(text.contains("db-host") && text.contains("EMPTY") && text.contains("\"prod\""));
        assert!(!text.contains("secret-value-1"), "{text}");
    }

    #[test]
    fn only_created_constants_of_pruning_sources_are_deleted() {
        let present: BTreeMap<String, Vec<Present>> = [(
            "production".to_string(),
            vec![
                Present {
                    id: "a".into(),
                    name: "GONE".into(),
                    kind: ConstantKind::Secret,
                },
                Present {
                    id: "b".into(),
                    name: "HAND".into(),
                    kind: ConstantKind::Secret,
                },
                Present {
                    id: "c".into(),
                    name: "OTHER".into(),
                    kind: ConstantKind::Secret,
                },
            ],
        )]
        .into();
        let applied = |created: bool, source: &str| AppliedValue {
            hash: "h".into(),
            created,
            source: source.into(),
        };
        let state: BTreeMap<String, AppliedValue> = [
            (
                constant_key(ConstantKind::Secret, "GONE", "production"),
                applied(true, "secret/prod"),
            ),
            (
                constant_key(ConstantKind::Secret, "HAND", "production"),
                applied(false, "secret/prod"),
            ),
            (
                constant_key(ConstantKind::Secret, "OTHER", "production"),
                applied(true, "secret/keep"),
            ),
        ]
        .into();
        let pruning: BTreeSet<String> = ["secret/prod".to_string()].into();
        let p = plan_constants(&[], &envs(), &present, &state, &pruning);
        assert_eq!(
            names(&p),
            ["delete GONE None"],
            "wanted nowhere: the whole constant"
        );
        let p = plan_constants(&[], &envs(), &present, &state, &BTreeSet::new());
        assert!(p.writes.is_empty(), "no source prunes: nothing is deleted");
    }

    #[test]
    fn hashes_depend_on_key_and_value_and_show_neither() {
        let a = value_hash("Secret/A/production", &SecretString::from("pw"));
        assert_ne!(
            a,
            value_hash("Secret/B/production", &SecretString::from("pw"))
        );
        assert_ne!(
            a,
            value_hash("Secret/A/production", &SecretString::from("pw2"))
        );
        assert!(!a.contains("pw") && a.len() == 64);
        let o1 = options_hash("x", &[("b".into(), "2".into()), ("a".into(), "1".into())]);
        let o2 = options_hash("x", &[("a".into(), "1".into()), ("b".into(), "2".into())]);
        assert_eq!(o1, o2, "order does not matter");
        assert_ne!(o1, options_hash("x", &[("a".into(), "1".into())]));
    }
}
