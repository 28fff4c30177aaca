//! Global data sources: the types the client returns and sends, and the pure merge that turns
//! the options ToolJet shows for one environment plus the secrets to set into the FULL list a
//! `PUT /api/data-sources/:id` needs (ToolJet replaces the stored options by exactly the keys
//! sent, `util.service.ts` `updateOptions`).

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};

/// A global data source of a workspace (`GET /api/data-sources/:organizationId`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSource {
    /// Data source UUID.
    pub id: String,
    /// Name (unique per workspace among active ones).
    pub name: String,
    /// Plugin kind, e.g. `postgresql`, `restapi`.
    pub kind: String,
    /// `default`, `sample` or `static`.
    pub ds_type: String,
    /// `global` (3.x) or the legacy `local`.
    pub scope: Option<String>,
}

/// The value of one option to send.
#[derive(Clone, Debug)]
pub enum OptionValue {
    /// A non-secret value, sent as it is (usually what ToolJet showed, unchanged).
    Plain(Value),
    /// A secret; it leaves this process only in the request body.
    Secret(SecretString),
}

/// One entry of the `options` array of `PUT /api/data-sources/:id`: `{key, value?, encrypted}`.
/// An encrypted entry without a value keeps the secret ToolJet already stores.
#[derive(Clone, Debug)]
pub struct OptionEntry {
    /// Option name, e.g. `password`.
    pub key: String,
    /// `None` = no `value` field at all.
    pub value: Option<OptionValue>,
    /// Whether ToolJet stores the option as an encrypted credential.
    pub encrypted: bool,
}

impl OptionEntry {
    /// The JSON entry, with a secret exposed: for the request body only.
    pub(crate) fn to_wire(&self) -> Value {
        let mut m = Map::new();
        m.insert("key".into(), json!(self.key));
        match &self.value {
            Some(OptionValue::Plain(v)) => {
                m.insert("value".into(), v.clone());
            }
            Some(OptionValue::Secret(s)) => {
                m.insert("value".into(), json!(s.expose_secret()));
            }
            None => {}
        }
        m.insert("encrypted".into(), json!(self.encrypted));
        Value::Object(m)
    }
}

/// Builds the full option list for one environment from `current` (the `options` object of
/// `GET /api/data-sources/:id/environment/:envId`) and the `secrets` to set.
///
/// **Contract.** ToolJet never shows a stored secret, so whether a PUT would change anything
/// cannot be read from `current`: the caller keeps a hash of what it last applied (per data
/// source id and environment) and passes `secrets_changed` = that hash differs, or is unknown.
/// * Returns `None` (send nothing) only when `secrets_changed` is false and every secret key
///   already exists in `current` as an encrypted option.
/// * Otherwise returns every option of `current`, in its order, never dropping one: a
///   non-encrypted option with its value unchanged (so GitSync's "secrets-only edit" check
///   passes), an encrypted option not being set with no value (ToolJet keeps its secret);
///   then each secret key set (`encrypted: true`), in place when it exists, appended when
///   not. A key given twice in `secrets` takes the last value.
pub fn merge_options(
    current: &Map<String, Value>,
    secrets: &[(String, SecretString)],
    secrets_changed: bool,
) -> Option<Vec<OptionEntry>> {
    let is_encrypted = |o: &Value| o.get("encrypted").and_then(Value::as_bool) == Some(true);
    let already = secrets
        .iter()
        .all(|(k, _)| current.get(k).is_some_and(is_encrypted));
    if !secrets_changed && already {
        return None;
    }
    let secret_of = |key: &str| {
        secrets
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, s)| s.clone())
    };
    let mut out: Vec<OptionEntry> = current
        .iter()
        .map(|(key, o)| match secret_of(key) {
            Some(s) => OptionEntry {
                key: key.clone(),
                value: Some(OptionValue::Secret(s)),
                encrypted: true,
            },
            None if is_encrypted(o) => OptionEntry {
                key: key.clone(),
                value: None,
                encrypted: true,
            },
            None => OptionEntry {
                key: key.clone(),
                value: o.get("value").cloned().map(OptionValue::Plain),
                encrypted: false,
            },
        })
        .collect();
    for (key, _) in secrets {
        if current.contains_key(key) || out.iter().any(|e| &e.key == key) {
            continue;
        }
        out.push(OptionEntry {
            key: key.clone(),
            value: secret_of(key).map(OptionValue::Secret),
            encrypted: true,
        });
    }
    Some(out)
}

/// `GET /api/data-sources/:organizationId` → `{data_sources:[{id, name, kind, type, scope, ...}]}`.
pub(crate) fn parse_data_sources(v: &Value) -> Result<Vec<DataSource>, String> {
    let items = v
        .get("data_sources")
        .or_else(|| v.get("dataSources"))
        .and_then(Value::as_array)
        .ok_or("expected `data_sources`")?;
    let s = |d: &Value, k: &str| d.get(k).and_then(Value::as_str).map(str::to_string);
    items
        .iter()
        .map(|d| {
            Ok(DataSource {
                id: s(d, "id").ok_or("data source without `id`")?,
                name: s(d, "name").ok_or("data source without `name`")?,
                kind: s(d, "kind").ok_or("data source without `kind`")?,
                ds_type: s(d, "type").unwrap_or_else(|| "default".into()),
                scope: s(d, "scope"),
            })
        })
        .collect()
}

/// `GET /api/data-sources/:id/environment/:envId` → its `options` object. Values of encrypted
/// options are dropped even if a server sent them, so no secret is kept.
pub(crate) fn parse_options(v: &Value) -> Result<Map<String, Value>, String> {
    let opts = match v.get("options") {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err("`options` is not an object keyed by option name".into()),
    };
    Ok(opts
        .into_iter()
        .map(|(k, mut o)| {
            if o.get("encrypted").and_then(Value::as_bool) == Some(true) {
                if let Some(m) = o.as_object_mut() {
                    m.remove("value");
                }
            }
            (k, o)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> Map<String, Value> {
        json!({
            "host": {"value": "db.prod", "encrypted": false},
            "port": {"value": 5432, "encrypted": false},
            "headers": {"value": [["a", "b"]], "encrypted": false},
            "password": {"credential_id": "c1", "encrypted": true},
            "api_key": {"credential_id": "c2", "encrypted": true},
            "novalue": {"encrypted": false}
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    fn sec(k: &str, v: &str) -> (String, SecretString) {
        (k.to_string(), SecretString::from(v.to_string()))
    }

    fn wire(list: &[OptionEntry]) -> Vec<Value> {
        list.iter().map(OptionEntry::to_wire).collect()
    }

    #[test]
    fn keeps_every_option_and_sets_the_secrets() {
        let merged = merge_options(&current(), &[sec("password", "pw-1")], true).unwrap();
        let keys: Vec<_> = merged.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["host", "port", "headers", "password", "api_key", "novalue"]
        );
        assert_eq!(
            wire(&merged),
            vec![
                json!({"key": "host", "value": "db.prod", "encrypted": false}),
                json!({"key": "port", "value": 5432, "encrypted": false}),
                json!({"key": "headers", "value": [["a", "b"]], "encrypted": false}),
                json!({"key": "password", "value": "pw-1", "encrypted": true}),
                json!({"key": "api_key", "encrypted": true}),
                json!({"key": "novalue", "encrypted": false}),
            ]
        );
        assert!(!format!("{merged:?}").contains("pw-1"));
    }

    #[test]
    fn new_keys_are_appended_encrypted_and_the_last_duplicate_wins() {
        let merged = merge_options(
            &current(),
            &[
                sec("token", "t-1"),
                sec("host", "h-secret"),
                sec("token", "t-2"),
            ],
            true,
        )
        .unwrap();
        let w = wire(&merged);
        assert_eq!(w.len(), 7);
        assert_eq!(
            w[0],
            json!({"key": "host", "value": "h-secret", "encrypted": true})
        );
        assert_eq!(
            w[6],
            json!({"key": "token", "value": "t-2", "encrypted": true})
        );
    }

    #[test]
    fn nothing_to_send_only_when_unchanged_and_present() {
        assert!(merge_options(&current(), &[sec("password", "x")], false).is_none());
        // A key ToolJet does not hold encrypted yet must be written even with an unchanged hash.
        assert!(merge_options(&current(), &[sec("host", "x")], false).is_some());
        assert!(merge_options(&current(), &[sec("missing", "x")], false).is_some());
        // No secrets and no change: nothing.
        assert!(merge_options(&current(), &[], false).is_none());
        // An empty current list with secrets gives just the secrets.
        let merged = merge_options(&Map::new(), &[sec("password", "p")], true).unwrap();
        assert_eq!(
            wire(&merged),
            vec![json!({"key": "password", "value": "p", "encrypted": true})]
        );
    }

    #[test]
    fn parses_options_without_keeping_secret_values() {
        let v = json!({"id": "x", "options": {
            "host": {"value": "h", "encrypted": false},
            "password": {"credential_id": "c", "encrypted": true, "value": "leaked"}
        }});
        let o = parse_options(&v).unwrap();
        assert_eq!(o["host"]["value"], "h");
        assert!(o["password"].get("value").is_none());
        assert!(parse_options(&json!({"options": [1]})).is_err());
        let list = parse_data_sources(&json!({"data_sources": [
            {"id": "1", "name": "orders", "kind": "postgresql", "type": "default", "scope": "global"}
        ]}))
        .unwrap();
        assert_eq!(list[0].kind, "postgresql");
        assert!(parse_data_sources(&json!([])).is_err());
    }
}
