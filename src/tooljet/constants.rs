//! Environments and workspace constants: the types the client returns, ToolJet's own input
//! rules checked before sending (so a bad key fails here, named, with nothing sent), and the
//! pure parsing of the answers. Values travel as [`SecretString`] and never show in `Debug`.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{ConstantKind, Error};

/// Longest constant name ToolJet accepts (`CreateOrganizationConstantDto`, `MaxLength(50)`).
pub const MAX_CONSTANT_NAME: usize = 50;

/// Longest constant value ToolJet accepts (`MaxLength(10000)`; values must not be empty).
pub const MAX_CONSTANT_VALUE: usize = 10_000;

/// The string ToolJet shows instead of a secret constant's value (`'**********'`, 10 stars;
/// older builds and `removeSecretValues()` used 8).
const MASKS: &[&str] = &["**********", "********"];

/// A ToolJet environment of a workspace (`app_environments`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// Environment UUID.
    pub id: String,
    /// `development`, `staging` or `production` (fixed names).
    pub name: String,
    /// 1 = development … 3 = production.
    pub priority: u32,
    /// The default environment (production), where released apps run. The External API does
    /// not say; there the highest priority counts as default.
    pub is_default: bool,
}

/// A workspace constant as seen in one environment.
#[derive(Clone, Debug)]
pub struct ConstantEntry {
    /// Constant UUID (for update and delete).
    pub id: String,
    /// Constant name.
    pub name: String,
    /// Global or Secret.
    pub kind: ConstantKind,
    /// ToolJet showed a mask instead of the value (every Secret): it cannot be read back.
    pub value_masked: bool,
    /// The value of a Global constant in this environment; `None` when masked. A mask is
    /// never kept as a value.
    pub value: Option<SecretString>,
}

impl ConstantKind {
    /// ToolJet's `type` value: `Global` or `Secret`.
    pub fn as_tooljet(self) -> &'static str {
        match self {
            ConstantKind::Global => "Global",
            ConstantKind::Secret => "Secret",
        }
    }
}

/// Checks a constant name as ToolJet's DTO does: 1–50 characters matching
/// `^[a-zA-Z_][a-zA-Z0-9_]*$` (`organization-constants/dto/index.ts`).
pub fn check_constant_name(name: &str) -> Result<(), Error> {
    let refuse = |detail: &str| {
        Err(Error::InvalidConstant {
            key: name.to_string(),
            detail: detail.to_string(),
        })
    };
    if name.is_empty() {
        return refuse("the name is empty");
    }
    if name.chars().count() > MAX_CONSTANT_NAME {
        return refuse(&format!(
            "the name is longer than ToolJet's {MAX_CONSTANT_NAME} characters"
        ));
    }
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return refuse("ToolJet names must start with a letter or underscore and contain only letters, digits and underscores (^[a-zA-Z_][a-zA-Z0-9_]*$); rename the key");
    }
    Ok(())
}

/// Checks a constant value as ToolJet's DTO does: not empty, at most 10,000 characters
/// (JavaScript `length`, i.e. UTF-16 code units). `key` names it in the error; the value
/// itself never appears.
pub fn check_constant_value(key: &str, value: &SecretString) -> Result<(), Error> {
    let v = value.expose_secret();
    let detail = if v.is_empty() {
        "the value is empty; ToolJet stores no empty constants".to_string()
    } else if v.encode_utf16().count() > MAX_CONSTANT_VALUE {
        format!("the value is longer than ToolJet's {MAX_CONSTANT_VALUE} characters")
    } else {
        return Ok(());
    };
    Err(Error::InvalidConstant {
        key: key.to_string(),
        detail,
    })
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// `GET /api/app-environments` → `{environments:[{id, name, priority, is_default, ...}]}`, or
/// the External API v2's `{data:[{id, name, priority}]}`. Sorted by priority.
pub(crate) fn parse_environments(v: &Value) -> Result<Vec<Environment>, String> {
    let items = v
        .get("environments")
        .or_else(|| v.get("data"))
        .and_then(Value::as_array)
        .ok_or("expected `environments`")?;
    let mut envs = items
        .iter()
        .map(|e| {
            Ok(Environment {
                id: str_of(e, "id").ok_or("environment without `id`")?,
                name: str_of(e, "name").ok_or("environment without `name`")?,
                priority: e
                    .get("priority")
                    .and_then(Value::as_u64)
                    .and_then(|p| u32::try_from(p).ok())
                    .unwrap_or(0),
                is_default: e
                    .get("is_default")
                    .or_else(|| e.get("isDefault"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    envs.sort_by_key(|e| e.priority);
    if !envs.iter().any(|e| e.is_default) {
        if let Some(last) = envs.last_mut() {
            last.is_default = true;
        }
    }
    Ok(envs)
}

/// `GET /api/organization-constants/environment/:id` → `{constants:[{id, name, type,
/// value}]}`. A masked value is dropped, never kept.
pub(crate) fn parse_constant_entries(v: &Value) -> Result<Vec<ConstantEntry>, String> {
    let items = v
        .get("constants")
        .and_then(Value::as_array)
        .ok_or("expected `constants`")?;
    items
        .iter()
        .map(|c| {
            let kind = match c.get("type").and_then(Value::as_str) {
                Some(t) if t.eq_ignore_ascii_case("secret") => ConstantKind::Secret,
                _ => ConstantKind::Global,
            };
            let raw = c.get("value").and_then(Value::as_str);
            let masked = kind == ConstantKind::Secret || raw.is_some_and(|r| MASKS.contains(&r));
            Ok(ConstantEntry {
                id: str_of(c, "id").ok_or("constant without `id`")?,
                name: str_of(c, "name")
                    .or_else(|| str_of(c, "constant_name"))
                    .ok_or("constant without `name`")?,
                kind,
                value_masked: masked,
                value: if masked {
                    None
                } else {
                    raw.map(SecretString::from)
                },
            })
        })
        .collect()
}

/// `{constant:{id, ...}}` of a create or update → the id.
pub(crate) fn parse_constant_id(v: &Value) -> Result<String, String> {
    v.get("constant")
        .and_then(|c| str_of(c, "id"))
        .ok_or_else(|| "expected `constant.id`".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_tooljets_rules() {
        for ok in ["A", "_", "db_host", "API_KEY_2", &"x".repeat(50)] {
            check_constant_name(ok).unwrap();
        }
        for bad in [
            "",
            "1abc",
            "db-host",
            "db.host",
            "with space",
            "ümlaut",
            "<b>x</b>",
            &"x".repeat(51),
        ] {
            let e = check_constant_name(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidConstant { .. }), "{bad}");
            assert_eq!(e.reason(), "ToolJetRejected");
            assert!(!e.is_transient());
        }
        let e = check_constant_name("db-host").unwrap_err().to_string();
        assert!(e.contains("\"db-host\""), "{e}");
        assert!(e.contains("^[a-zA-Z_][a-zA-Z0-9_]*$"), "{e}");
    }

    #[test]
    fn values_are_checked_without_showing_them() {
        check_constant_value("K", &SecretString::from("v")).unwrap();
        check_constant_value("K", &SecretString::from("x".repeat(10_000))).unwrap();
        let long = format!("sekrit-{}", "y".repeat(10_000));
        let e = check_constant_value("API_KEY", &SecretString::from(long.clone())).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(text.contains("API_KEY"), "{text}");
        assert!(!text.contains("sekrit"), "{text}");
        let e = check_constant_value("EMPTY", &SecretString::from("")).unwrap_err();
        assert!(e.to_string().contains("empty"));
        // JavaScript counts UTF-16 code units: 5,000 astral characters are 10,000 units.
        check_constant_value("K", &SecretString::from("😀".repeat(5_000))).unwrap();
        assert!(check_constant_value("K", &SecretString::from("😀".repeat(5_001))).is_err());
    }

    #[test]
    fn environments_in_both_shapes() {
        let v = json!({"environments": [
            {"id": "p", "name": "production", "priority": 3, "is_default": true},
            {"id": "d", "name": "development", "priority": 1, "is_default": false},
            {"id": "s", "name": "staging", "priority": 2, "is_default": false}
        ]});
        let envs = parse_environments(&v).unwrap();
        let names: Vec<_> = envs.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["development", "staging", "production"]);
        assert!(envs[2].is_default && !envs[0].is_default);
        let ext = json!({"data": [{"id": "d", "name": "development", "priority": 1},
                                   {"id": "p", "name": "production", "priority": 3}]});
        let envs = parse_environments(&ext).unwrap();
        assert_eq!(envs[1].name, "production");
        assert!(envs[1].is_default, "the highest priority is the default");
        assert!(parse_environments(&json!({"x": 1})).is_err());
    }

    #[test]
    fn masks_are_never_values() {
        let v = json!({"constants": [
            {"id": "1", "name": "URL", "type": "Global", "value": "https://x"},
            {"id": "2", "name": "KEY", "type": "Secret", "value": "**********"},
            {"id": "3", "name": "OLD", "type": "Global", "value": "********"}
        ]});
        let c = parse_constant_entries(&v).unwrap();
        assert_eq!(
            c[0].value.as_ref().map(|s| s.expose_secret()),
            Some("https://x")
        );
        assert!(!c[0].value_masked);
        assert!(c[1].value_masked && c[1].value.is_none());
        assert_eq!(c[1].kind, ConstantKind::Secret);
        assert!(c[2].value_masked && c[2].value.is_none());
        assert!(!format!("{c:?}").contains("https://x"));
    }
}
