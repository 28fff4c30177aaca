//! Reading what push and pull need out of an export (reference §2):
//! `{app:[{definition:{appV2:{...}}}], tooljet_database?, tooljet_version}`.

use serde_json::Value;
use std::collections::BTreeSet;

/// The app and version an export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedApp {
    /// `appV2.id`: the app's id in the exporting instance.
    pub id: String,
    /// `appV2.name`.
    pub name: String,
    /// Id of the exported version.
    pub version_id: String,
    /// Name of the exported version.
    pub version_name: String,
    /// Top-level `tooljet_version` (required by ToolJet's import, absent in some hand-made files).
    pub tooljet_version: Option<String>,
}

/// Why an export cannot be read; the message names the missing part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// A required part is missing or has the wrong type.
    #[error("the export has no {what} (expected {{app:[{{definition:{{appV2:{{...}}}}}}], tooljet_version}}); export the app again from ToolJet")]
    Missing {
        /// JSON path of the missing part.
        what: &'static str,
    },
    /// No version could be identified.
    #[error("the export names no version (neither appVersions nor editingVersion has an id and a name); export one version of the app")]
    NoVersion,
}

/// Reads the app and its exported version from an export.
///
/// The exported version is the single entry of `appVersions` (ToolJet's export of one version
/// filters `appVersions` to it, while `editingVersion` stays the app's editing version, which
/// may be another one). With several entries: the one matching `editingVersion`, then the one
/// matching `currentVersionId`, then the last (newest, ToolJet orders by `created_at`). Without
/// `appVersions`: `editingVersion`.
pub fn app_from_export(export: &Value) -> Result<ExportedApp, ExportError> {
    let app = export
        .get("app")
        .and_then(Value::as_array)
        .and_then(|apps| apps.first())
        .ok_or(ExportError::Missing { what: "app[0]" })?;
    let app_v2 = app
        .get("definition")
        .and_then(|definition| definition.get("appV2"))
        .and_then(Value::as_object)
        .ok_or(ExportError::Missing {
            what: "app[0].definition.appV2",
        })?;
    let text = |key: &str| app_v2.get(key).and_then(Value::as_str).map(str::to_owned);
    let id = text("id").ok_or(ExportError::Missing {
        what: "app[0].definition.appV2.id",
    })?;
    let name = text("name").ok_or(ExportError::Missing {
        what: "app[0].definition.appV2.name",
    })?;

    let version_of = |value: &Value| -> Option<(String, String)> {
        Some((
            value.get("id")?.as_str()?.to_owned(),
            value.get("name")?.as_str()?.to_owned(),
        ))
    };
    let versions: Vec<(String, String)> = app_v2
        .get("appVersions")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(version_of).collect())
        .unwrap_or_default();
    let editing = app_v2.get("editingVersion").and_then(version_of);
    let current = text("currentVersionId");
    let chosen = match versions.len() {
        0 => editing,
        1 => versions.into_iter().next(),
        _ => {
            let by_id = |wanted: &str| versions.iter().find(|(id, _)| id == wanted).cloned();
            editing
                .as_ref()
                .and_then(|(id, _)| by_id(id))
                .or_else(|| current.as_deref().and_then(by_id))
                .or_else(|| versions.last().cloned())
        }
    };
    let (version_id, version_name) = chosen.ok_or(ExportError::NoVersion)?;
    Ok(ExportedApp {
        id,
        name,
        version_id,
        version_name,
        tooljet_version: export
            .get("tooljet_version")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// A reference to a workspace-level value, which GitSync does not carry between instances.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ref {
    /// `{{constants.NAME}}`: a workspace constant.
    Constant(String),
    /// `{{secrets.NAME}}`: a workspace secret.
    Secret(String),
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ref::Constant(name) => write!(f, "constants.{name}"),
            Ref::Secret(name) => write!(f, "secrets.{name}"),
        }
    }
}

/// Lists the workspace constants and secrets the app refers to, so pull can warn about those
/// missing in the target workspace (constants are not synced, reference §4).
///
/// Looks inside every `{{ … }}` expression of every string, for `constants.NAME`,
/// `constants["NAME"]` and `constants['NAME']` (and the same for `secrets`), where `constants`
/// is not itself a property of something else (`foo.constants.x` does not count).
pub fn workspace_references(export: &Value) -> BTreeSet<Ref> {
    let mut found = BTreeSet::new();
    collect_strings(export, &mut |text| scan_text(text, &mut found));
    found
}

fn collect_strings(value: &Value, visit: &mut dyn FnMut(&str)) {
    match value {
        Value::String(text) => visit(text),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, visit)),
        Value::Object(object) => object
            .values()
            .for_each(|child| collect_strings(child, visit)),
        _ => {}
    }
}

fn scan_text(text: &str, found: &mut BTreeSet<Ref>) {
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after_open = &rest[open + 2..];
        let Some(close) = after_open.find("}}") else {
            return;
        };
        scan_expression(&after_open[..close], found);
        rest = &after_open[close + 2..];
    }
}

fn scan_expression(expression: &str, found: &mut BTreeSet<Ref>) {
    for (root, make) in [
        ("constants", Ref::Constant as fn(String) -> Ref),
        ("secrets", Ref::Secret as fn(String) -> Ref),
    ] {
        let mut search_from = 0;
        while let Some(offset) = expression[search_from..].find(root) {
            let start = search_from + offset;
            let end = start + root.len();
            search_from = end;
            let preceded_ok = expression[..start]
                .trim_end()
                .chars()
                .next_back()
                .is_none_or(|c| !(is_identifier_char(c) || c == '.'));
            if !preceded_ok {
                continue;
            }
            if let Some(name) = member_name(&expression[end..]) {
                found.insert(make(name));
            }
        }
    }
}

/// The member accessed right after a root identifier: `.NAME`, `?.NAME`, `["NAME"]`, `['NAME']`.
fn member_name(after: &str) -> Option<String> {
    let after = after.trim_start();
    let dotted = after
        .strip_prefix("?.")
        .or_else(|| after.strip_prefix('.'))
        .map(str::trim_start);
    if let Some(rest) = dotted {
        let name: String = rest
            .chars()
            .take_while(|c| is_identifier_char(*c))
            .collect();
        return (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()))
            .then_some(name);
    }
    let rest = after
        .strip_prefix("?.[")
        .or_else(|| after.strip_prefix('['))?
        .trim_start();
    let quote = rest
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '\'' | '`'))?;
    let body = &rest[quote.len_utf8()..];
    let close = body.find(quote)?;
    let name = &body[..close];
    (!name.is_empty()).then(|| name.to_owned())
}

fn is_identifier_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn export_with(app_v2: Value) -> Value {
        json!({"app": [{"definition": {"appV2": app_v2}}], "tooljet_version": "3.16.0"})
    }

    #[test]
    fn reads_the_single_exported_version() {
        let export = export_with(json!({
            "id": "app-1", "name": "Sales Dashboard",
            "editingVersion": {"id": "v-editing", "name": "v4"},
            "appVersions": [{"id": "v-3", "name": "v3"}]
        }));
        assert_eq!(
            app_from_export(&export).unwrap(),
            ExportedApp {
                id: "app-1".into(),
                name: "Sales Dashboard".into(),
                version_id: "v-3".into(),
                version_name: "v3".into(),
                tooljet_version: Some("3.16.0".into()),
            }
        );
    }

    #[test]
    fn chooses_among_several_versions() {
        let mut app = json!({
            "id": "a", "name": "A",
            "editingVersion": {"id": "2", "name": "v2"},
            "currentVersionId": "1",
            "appVersions": [{"id": "1", "name": "v1"}, {"id": "2", "name": "v2"}, {"id": "3", "name": "v3"}]
        });
        assert_eq!(
            app_from_export(&export_with(app.clone()))
                .unwrap()
                .version_name,
            "v2"
        );
        app["editingVersion"] = json!(null);
        assert_eq!(
            app_from_export(&export_with(app.clone()))
                .unwrap()
                .version_name,
            "v1"
        );
        app["currentVersionId"] = json!(null);
        assert_eq!(
            app_from_export(&export_with(app.clone()))
                .unwrap()
                .version_name,
            "v3"
        );
        let only_editing =
            json!({"id": "a", "name": "A", "editingVersion": {"id": "9", "name": "v9"}});
        let found = app_from_export(&export_with(only_editing)).unwrap();
        assert_eq!(
            (found.version_id.as_str(), found.version_name.as_str()),
            ("9", "v9")
        );
    }

    #[test]
    fn missing_parts_are_named() {
        assert_eq!(
            app_from_export(&json!({})).unwrap_err(),
            ExportError::Missing { what: "app[0]" }
        );
        assert_eq!(
            app_from_export(&json!({"app": [{"definition": {}}]})).unwrap_err(),
            ExportError::Missing {
                what: "app[0].definition.appV2"
            }
        );
        assert_eq!(
            app_from_export(&export_with(json!({"id": "a"}))).unwrap_err(),
            ExportError::Missing {
                what: "app[0].definition.appV2.name"
            }
        );
        let err = app_from_export(&export_with(json!({"id": "a", "name": "A"}))).unwrap_err();
        assert_eq!(err, ExportError::NoVersion);
        assert!(err.to_string().contains("export one version"));
        let no_tooljet_version = json!({"app": [{"definition": {"appV2": {"id": "a", "name": "A", "appVersions": [{"id": "1", "name": "v1"}]}}}]});
        assert_eq!(
            app_from_export(&no_tooljet_version)
                .unwrap()
                .tooljet_version,
            None
        );
    }

    #[test]
    fn finds_constants_and_secrets() {
        let export = export_with(json!({
            "components": [{"properties": {"text": {"value": "Region {{constants.REGION}} / {{ constants.api_url + '/x' }}"}}}],
            "dataQueries": [{"options": {
                "headers": [["Authorization", "Bearer {{secrets.API_TOKEN}}"]],
                "url": "{{constants['BASE URL']}}/{{constants?.tenant_id}}",
                "body": "{{ foo.constants.NOT_ME }} {{myconstants.NOPE}} constants.OUTSIDE {{constants}} {{constants.1bad}}"
            }}],
            "events": [{"event": {"message": "{{ `${constants.GREETING}` }} {{secrets[\"db-pass\"]}} {{ constants . SPACED }}"}}],
            "unterminated": "{{constants.NEVER"
        }));
        let refs: Vec<String> = workspace_references(&export)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            refs,
            [
                "constants.BASE URL",
                "constants.GREETING",
                "constants.REGION",
                "constants.SPACED",
                "constants.api_url",
                "constants.tenant_id",
                "secrets.API_TOKEN",
                "secrets.db-pass",
            ]
        );
        assert!(workspace_references(&json!({"a": "no refs"})).is_empty());
    }
}
