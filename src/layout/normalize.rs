//! The normalized form of an export, on which "changed" is decided (design §3 rule 3).
//!
//! Two exports of the same app from different ToolJet instances, or before and after a
//! re-import, differ in things that carry no meaning for the app: every UUID (app, versions,
//! pages, components, queries, environments, organization, user), timestamps and
//! `tooljet_version`. The normalized form:
//!
//! * drops the top-level `tooljet_version`;
//! * drops `createdAt`, `updatedAt`, `created_at` and `updated_at` wherever they hold a scalar
//!   (a timestamp), at any depth;
//! * sorts the arrays ToolJet fills from database rows (`components`, `pages`, `events`,
//!   `dataQueries`, `dataSources`, ... of an `appV2`, a component's `layouts`, the top-level
//!   `tooljet_database`), by their content with UUIDs masked, since older exporters do not
//!   order them; every other array keeps its order, which may carry meaning;
//! * orders object keys by their text with UUIDs masked (ties keep document order);
//! * replaces every UUID, also inside longer strings and object keys, by a placeholder numbered
//!   by first appearance in that order. Two documents that differ only by a one-to-one renaming
//!   of UUIDs get the same form; a reference that now points at a different object does not.
//!
//! Placeholders are introduced with the code point U+0001, which is doubled wherever it occurs
//! in the input, so no input text can imitate a placeholder.

use serde_json::{Number, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Keys whose scalar values are timestamps that change on every save or import.
const TIMESTAMP_KEYS: [&str; 4] = ["createdAt", "updatedAt", "created_at", "updated_at"];

/// Arrays of an `appV2` object that ToolJet fills from database rows; their order is not
/// part of the app.
const UNORDERED_APP_ARRAYS: [&str; 12] = [
    "components",
    "pages",
    "events",
    "dataQueries",
    "dataSources",
    "dataQueryFolders",
    "dataQueryFolderMappings",
    "appVersions",
    "appEnvironments",
    "dataSourceOptions",
    "dataSourcesOptions",
    "modules",
];

const MARK: char = '\u{1}';

/// SHA-256 (hex) of the canonical normalized form: equal for exports that differ only in
/// volatile fields, different for any real change.
pub fn content_digest(export: &Value) -> String {
    digest_of(export, Identity::Keep)
}

/// Whether two exports are the same app content (see [`content_digest`]).
pub fn same_content(a: &Value, b: &Value) -> bool {
    canonical_bytes(a, Identity::Keep) == canonical_bytes(b, Identity::Keep)
}

/// The canonical normalized form as compact JSON text, for diagnostics and tests.
pub fn normalized_text(export: &Value) -> String {
    String::from_utf8_lossy(&canonical_bytes(export, Identity::Keep)).into_owned()
}

/// Whether the app and version names take part in the comparison. Push planning tracks
/// renames through `.meta/meta.json` and compares the rest of the content separately, so that
/// a pure rename is told apart from a content change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identity {
    Keep,
    Ignore,
}

pub(crate) fn digest_of(export: &Value, identity: Identity) -> String {
    let digest = Sha256::digest(canonical_bytes(export, identity));
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn canonical_bytes(export: &Value, identity: Identity) -> Vec<u8> {
    let prepared = prepare(export, Context::Root, identity);
    let mut numbering = Numbering::default();
    let mut out = String::new();
    write_canonical(&prepared, &mut numbering, &mut out);
    out.into_bytes()
}

/// Where a value sits, as far as normalization cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Root,
    /// The top-level `app` array, one of its entries, and that entry's `definition`.
    AppList,
    AppEntry,
    Definition,
    /// An `appV2` object; `true` for the exported app itself, `false` for nested ones
    /// (modules), whose names always count.
    AppV2(bool),
    /// A version object of an `appV2` (same flag).
    Version(bool),
    UnorderedArray(UnorderedKind),
    Component,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnorderedKind {
    Components,
    Versions(bool),
    Other,
}

/// A value after dropping, sorting and reordering, before UUID numbering.
enum Prepared {
    Scalar(Value),
    Str(String),
    Array(Vec<Prepared>),
    Object(Vec<(String, Prepared)>),
}

fn prepare(value: &Value, context: Context, identity: Identity) -> Prepared {
    match value {
        Value::String(text) => Prepared::Str(text.clone()),
        Value::Array(items) => {
            let child_context = match context {
                Context::UnorderedArray(UnorderedKind::Components) => Context::Component,
                Context::UnorderedArray(UnorderedKind::Versions(top)) => Context::Version(top),
                Context::AppList => Context::AppEntry,
                _ => Context::Other,
            };
            let mut prepared: Vec<Prepared> = items
                .iter()
                .map(|item| prepare(item, child_context, identity))
                .collect();
            if matches!(context, Context::UnorderedArray(_)) {
                let mut keyed: Vec<(String, Prepared)> = prepared
                    .into_iter()
                    .map(|item| (masked(&item), item))
                    .collect();
                // Stable: equal masked forms keep document order.
                keyed.sort_by(|a, b| a.0.cmp(&b.0));
                prepared = keyed.into_iter().map(|(_, item)| item).collect();
            }
            Prepared::Array(prepared)
        }
        Value::Object(object) => {
            let mut entries = Vec::with_capacity(object.len());
            for (key, child) in object {
                if TIMESTAMP_KEYS.contains(&key.as_str())
                    && matches!(child, Value::String(_) | Value::Number(_) | Value::Null)
                {
                    continue;
                }
                if context == Context::Root && key == "tooljet_version" {
                    continue;
                }
                if identity == Identity::Ignore
                    && key == "name"
                    && matches!(context, Context::AppV2(true) | Context::Version(true))
                {
                    continue;
                }
                let child_context = match (context, key.as_str()) {
                    (Context::Root, "app") => Context::AppList,
                    (Context::AppEntry, "definition") => Context::Definition,
                    (Context::Definition, "appV2") => Context::AppV2(true),
                    (_, "appV2") => Context::AppV2(false),
                    (Context::Root, "tooljet_database") => {
                        Context::UnorderedArray(UnorderedKind::Other)
                    }
                    (Context::AppV2(_), "components") => {
                        Context::UnorderedArray(UnorderedKind::Components)
                    }
                    (Context::AppV2(top), "appVersions") => {
                        Context::UnorderedArray(UnorderedKind::Versions(top))
                    }
                    (Context::AppV2(top), "editingVersion") => Context::Version(top),
                    (Context::AppV2(_), key) if UNORDERED_APP_ARRAYS.contains(&key) => {
                        Context::UnorderedArray(UnorderedKind::Other)
                    }
                    (Context::Component, "layouts") => {
                        Context::UnorderedArray(UnorderedKind::Other)
                    }
                    _ => Context::Other,
                };
                entries.push((
                    key.clone(),
                    masked_text(key),
                    prepare(child, child_context, identity),
                ));
            }
            // Stable: keys equal once masked keep document order.
            entries.sort_by(|a, b| a.1.cmp(&b.1));
            Prepared::Object(
                entries
                    .into_iter()
                    .map(|(key, _, child)| (key, child))
                    .collect(),
            )
        }
        other => Prepared::Scalar(other.clone()),
    }
}

/// The canonical text of a prepared value with every UUID replaced by the same mask, used as a
/// sort key that does not depend on instance-specific ids.
fn masked(value: &Prepared) -> String {
    let mut out = String::new();
    write_masked(value, &mut out);
    out
}

fn write_masked(value: &Prepared, out: &mut String) {
    match value {
        Prepared::Scalar(scalar) => write_scalar(scalar, out),
        Prepared::Str(text) => write_string(&masked_text(text), out),
        Prepared::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_masked(item, out);
            }
            out.push(']');
        }
        Prepared::Object(entries) => {
            out.push('{');
            for (index, (key, child)) in entries.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(&masked_text(key), out);
                out.push(':');
                write_masked(child, out);
            }
            out.push('}');
        }
    }
}

fn masked_text(text: &str) -> String {
    replace_uuids(text, |_| format!("{MARK}u{MARK}"))
}

#[derive(Default)]
struct Numbering {
    ids: HashMap<String, usize>,
}

impl Numbering {
    fn rename(&mut self, text: &str) -> String {
        replace_uuids(text, |uuid| {
            let next = self.ids.len() + 1;
            let number = *self.ids.entry(uuid.to_ascii_lowercase()).or_insert(next);
            format!("{MARK}uuid:{number}{MARK}")
        })
    }
}

fn write_canonical(value: &Prepared, numbering: &mut Numbering, out: &mut String) {
    match value {
        Prepared::Scalar(scalar) => write_scalar(scalar, out),
        Prepared::Str(text) => {
            let renamed = numbering.rename(text);
            write_string(&renamed, out);
        }
        Prepared::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, numbering, out);
            }
            out.push(']');
        }
        Prepared::Object(entries) => {
            out.push('{');
            for (index, (key, child)) in entries.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                let renamed = numbering.rename(key);
                write_string(&renamed, out);
                out.push(':');
                write_canonical(child, numbering, out);
            }
            out.push('}');
        }
    }
}

fn write_scalar(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(number, out),
        // Strings, arrays and objects never reach here.
        Value::String(text) => write_string(text, out),
        Value::Array(_) | Value::Object(_) => out.push_str("null"),
    }
}

/// Integers print as integers; floats that are whole numbers print like integers too, as
/// JavaScript would, so `1.0` and `1` compare equal.
fn write_number(number: &Number, out: &mut String) {
    if let Some(float) = number.as_f64().filter(|_| number.is_f64()) {
        if float.fract() == 0.0 && float.abs() < 9.007_199_254_740_992e15 {
            // Exactly representable: print without a fraction.
            let _ = write!(out, "{}", float as i64);
            return;
        }
    }
    let _ = write!(out, "{number}");
}

fn write_string(text: &str, out: &mut String) {
    // serde_json escapes exactly the characters JSON requires; strings cannot fail to serialize.
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// Replaces every UUID (8-4-4-4-12 hex digits, any case) in `text` by `replacement(uuid)`,
/// doubling any pre-existing U+0001 so replacements cannot be imitated.
fn replace_uuids(text: &str, mut replacement: impl FnMut(&str) -> String) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    let mut copied = 0;
    while index < bytes.len() {
        if bytes[index] == MARK as u8 {
            out.push_str(&text[copied..index]);
            out.push(MARK);
            out.push(MARK);
            index += 1;
            copied = index;
        } else if is_uuid_at(bytes, index) {
            out.push_str(&text[copied..index]);
            out.push_str(&replacement(&text[index..index + 36]));
            index += 36;
            copied = index;
        } else {
            index += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

fn is_uuid_at(bytes: &[u8], start: usize) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    if bytes.len() < start + 36 {
        return false;
    }
    let mut position = start;
    for (index, length) in GROUPS.iter().enumerate() {
        if index > 0 {
            if bytes[position] != b'-' {
                return false;
            }
            position += 1;
        }
        if !bytes[position..position + length]
            .iter()
            .all(u8::is_ascii_hexdigit)
        {
            return false;
        }
        position += length;
    }
    true
}

/// Whether `text` contains a UUID, for tests and callers that want to know if a value is
/// instance-specific.
pub fn contains_uuid(text: &str) -> bool {
    (0..text.len()).any(|index| is_uuid_at(text.as_bytes(), index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const APP: &str = "39f9a222-5cf9-486d-9e9d-7ee9964752b1";
    const ORG: &str = "bd7b2464-71e2-42da-88dc-4a5e19687533";
    const VERSION: &str = "d486cb0f-64bf-41c0-b445-c8308e87c1bf";
    const PAGE: &str = "59fa088c-c75a-406c-b77d-a1d83d1efa3a";
    const BUTTON: &str = "6fdbe287-cffd-4d6d-a846-db5a003b6835";
    const TEXT: &str = "16bc77b4-7f41-4d66-8cd0-4c5a8e2d1569";
    const QUERY: &str = "0a5c1d2e-3f40-4b5c-8d6e-7f8091a2b3c4";
    const SOURCE: &str = "1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d";
    const ENV: &str = "7ec193af-01b6-4799-9bcc-9ad63e62b09d";
    const LAYOUT_A: &str = "ec2c437e-a095-4121-860c-32d66800b8f6";
    const LAYOUT_B: &str = "7da9faac-05a2-478e-a869-fd58fb8b0d37";

    /// A small export shaped like ToolJet's (reference §2).
    pub(crate) fn sample_export() -> Value {
        json!({
            "app": [{
                "definition": {
                    "appV2": {
                        "id": APP,
                        "type": "front-end",
                        "name": "Sales Dashboard",
                        "slug": APP,
                        "isPublic": false,
                        "icon": "home",
                        "organizationId": ORG,
                        "currentVersionId": null,
                        "userId": "5cbda7e2-fc63-47c2-a7f7-64f12517aa85",
                        "createdAt": "2024-03-01T10:00:00.000Z",
                        "updatedAt": "2024-03-01T10:22:33.123Z",
                        "editingVersion": {
                            "id": VERSION,
                            "name": "v3",
                            "globalSettings": {"canvasMaxWidth": 100},
                            "homePageId": PAGE,
                            "appId": APP,
                            "currentEnvironmentId": ENV,
                            "createdAt": "2024-03-01T10:00:00.000Z",
                            "updatedAt": "2024-03-01T10:22:33.123Z"
                        },
                        "components": [
                            {
                                "id": BUTTON,
                                "name": "button1",
                                "type": "Button",
                                "pageId": PAGE,
                                "parent": null,
                                "properties": {"text": {"value": "Refresh"}},
                                "styles": {"textColor": {"value": "#FFFFFF"}},
                                "createdAt": "2024-03-01T10:01:00.000Z",
                                "layouts": [
                                    {"id": LAYOUT_A, "type": "desktop", "top": 150, "left": 12, "componentId": BUTTON},
                                    {"id": LAYOUT_B, "type": "mobile", "top": 110, "left": 13, "componentId": BUTTON}
                                ]
                            },
                            {
                                "id": TEXT,
                                "name": "text1",
                                "type": "Text",
                                "pageId": PAGE,
                                "parent": null,
                                "properties": {"text": {"value": format!("{{{{queries.q1.data}}}} for {BUTTON}")}},
                                "layouts": []
                            }
                        ],
                        "pages": [{"id": PAGE, "name": "Home", "handle": "home", "index": 1, "appVersionId": VERSION}],
                        "events": [{"id": "9e8d7c6b-5a49-4c3b-8a2d-1e0f9a8b7c6d", "target": "component", "sourceId": BUTTON, "event": {"eventId": "onClick", "actionId": "run-query", "queryId": QUERY}, "index": 0}],
                        "dataQueries": [{"id": QUERY, "name": "q1", "options": {"url": "https://api.example.com/{{constants.REGION}}"}, "dataSourceId": SOURCE}],
                        "dataSources": [{"id": SOURCE, "name": "restapidefault", "kind": "restapi"}],
                        "appVersions": [{"id": VERSION, "name": "v3", "appId": APP, "homePageId": PAGE}],
                        "appEnvironments": [
                            {"id": ENV, "organizationId": ORG, "name": "development", "priority": 1},
                            {"id": "09bb8fda-db18-4408-9eec-cbfb256e8dc5", "organizationId": ORG, "name": "production", "priority": 3}
                        ],
                        "dataSourceOptions": [],
                        "schemaDetails": {"multiPages": true, "multiEnv": true}
                    }
                }
            }],
            "tooljet_version": "3.16.0-ee-lts"
        })
    }

    /// Applies `rename` to every UUID in every string and key.
    pub(crate) fn map_uuids(value: &Value, rename: &mut dyn FnMut(&str) -> String) -> Value {
        match value {
            Value::String(text) => Value::String(map_uuids_in(text, rename)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|item| map_uuids(item, rename)).collect())
            }
            Value::Object(object) => Value::Object(
                object
                    .iter()
                    .map(|(key, child)| (map_uuids_in(key, rename), map_uuids(child, rename)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn map_uuids_in(text: &str, rename: &mut dyn FnMut(&str) -> String) -> String {
        let bytes = text.as_bytes();
        let mut out = String::new();
        let mut index = 0;
        let mut copied = 0;
        while index < bytes.len() {
            if is_uuid_at(bytes, index) {
                out.push_str(&text[copied..index]);
                out.push_str(&rename(&text[index..index + 36]));
                index += 36;
                copied = index;
            } else {
                index += 1;
            }
        }
        out.push_str(&text[copied..]);
        out
    }

    fn fresh_uuid(seed: u64, n: usize) -> String {
        let x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add((n as u64).wrapping_mul(1442695040888963407));
        let hex = format!("{x:016x}{:016x}", x.rotate_left(17) ^ n as u64);
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    /// Renames every distinct UUID to a fresh one (one-to-one), as a re-import does.
    fn reimport(value: &Value, seed: u64) -> Value {
        let mut mapping: HashMap<String, String> = HashMap::new();
        map_uuids(value, &mut |uuid| {
            let n = mapping.len();
            mapping
                .entry(uuid.to_ascii_lowercase())
                .or_insert_with(|| fresh_uuid(seed, n))
                .clone()
        })
    }

    fn app_v2(value: &mut Value) -> &mut Value {
        &mut value["app"][0]["definition"]["appV2"]
    }

    #[test]
    fn volatile_fields_do_not_count() {
        let a = sample_export();
        let mut b = reimport(&a, 42);
        b["tooljet_version"] = json!("3.20.1-ee");
        app_v2(&mut b)["updatedAt"] = json!("2030-01-01T00:00:00.000Z");
        app_v2(&mut b)["components"][0]["createdAt"] = json!(1700000000000u64);
        app_v2(&mut b)["components"][0]
            .as_object_mut()
            .unwrap()
            .insert("updated_at".into(), json!("2030-01-01"));
        assert!(
            same_content(&a, &b),
            "{}\n{}",
            normalized_text(&a),
            normalized_text(&b)
        );
        assert_eq!(content_digest(&a), content_digest(&b));
        assert_eq!(content_digest(&a).len(), 64);
    }

    #[test]
    fn database_row_order_does_not_count_but_other_order_does() {
        let a = sample_export();
        let mut b = reimport(&a, 7);
        let components = app_v2(&mut b)["components"].as_array_mut().unwrap();
        components.reverse();
        components[1]["layouts"].as_array_mut().unwrap().reverse();
        app_v2(&mut b)["appEnvironments"]
            .as_array_mut()
            .unwrap()
            .reverse();
        assert!(same_content(&a, &b));
        // Key order does not count either.
        let reordered: Value = {
            let object = a.as_object().unwrap();
            Value::Object(
                object
                    .iter()
                    .rev()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        };
        assert!(same_content(&a, &reordered));
        // Order inside a property does.
        let mut c = a.clone();
        app_v2(&mut c)["components"][0]["properties"]["options"] = json!({"value": [1, 2]});
        let mut d = a.clone();
        app_v2(&mut d)["components"][0]["properties"]["options"] = json!({"value": [2, 1]});
        assert!(!same_content(&c, &d));
    }

    #[test]
    fn real_changes_count() {
        let a = sample_export();
        let changes: Vec<fn(&mut Value)> = vec![
            |v| app_v2(v)["components"][0]["properties"]["text"]["value"] = json!("Reload"),
            |v| app_v2(v)["dataQueries"][0]["options"]["url"] = json!("https://other"),
            |v| app_v2(v)["pages"][0]["name"] = json!("Start"),
            |v| app_v2(v)["components"][0]["layouts"][0]["top"] = json!(151),
            |v| app_v2(v)["name"] = json!("Other name"),
            |v| app_v2(v)["editingVersion"]["globalSettings"]["canvasMaxWidth"] = json!(90),
            // A component moved to another page: a reference now points elsewhere.
            |v| {
                app_v2(v)["pages"].as_array_mut().unwrap().push(
                    json!({"id": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", "name": "Other", "handle": "other", "index": 2}),
                );
            },
            |v| {
                app_v2(v)["components"][1]["pageId"] = json!("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee")
            },
            |v| app_v2(v)["components"][0]["createdAt"] = json!({"not": "a timestamp"}),
        ];
        for (index, change) in changes.into_iter().enumerate() {
            let mut b = a.clone();
            change(&mut b);
            assert!(!same_content(&a, &b), "change {index} not detected");
        }
        // Moving the text component onto the button's id changes references, too.
        let mut b = a.clone();
        app_v2(&mut b)["events"][0]["sourceId"] = json!(TEXT);
        assert!(!same_content(&a, &b));
    }

    #[test]
    fn identity_can_be_ignored() {
        let a = sample_export();
        let mut b = a.clone();
        app_v2(&mut b)["name"] = json!("Renamed");
        app_v2(&mut b)["editingVersion"]["name"] = json!("v4");
        app_v2(&mut b)["appVersions"][0]["name"] = json!("v4");
        assert_ne!(digest_of(&a, Identity::Keep), digest_of(&b, Identity::Keep));
        assert_eq!(
            digest_of(&a, Identity::Ignore),
            digest_of(&b, Identity::Ignore)
        );
        // Other "name" keys still count, also those of nested modules' appV2.
        let mut c = b.clone();
        app_v2(&mut c)["components"][0]["name"] = json!("button9");
        assert_ne!(
            digest_of(&a, Identity::Ignore),
            digest_of(&c, Identity::Ignore)
        );
        let with_module = |name: &str| {
            let mut v = a.clone();
            app_v2(&mut v)["modules"] =
                json!([{"appV2": {"name": name, "appVersions": [{"name": "v1"}]}}]);
            v
        };
        assert_ne!(
            digest_of(&with_module("m1"), Identity::Ignore),
            digest_of(&with_module("m2"), Identity::Ignore)
        );
    }

    #[test]
    fn placeholders_cannot_be_imitated() {
        let a = json!({"x": APP});
        let b = json!({"x": "\u{1}uuid:1\u{1}"});
        assert!(!same_content(&a, &b));
        let c = json!({"x": format!("\u{1}{APP}")});
        let d = json!({"x": "\u{1}\u{1}uuid:1\u{1}"});
        assert!(!same_content(&c, &d));
        // Same UUID in another case is the same id.
        assert!(same_content(
            &json!([APP, APP.to_uppercase()]),
            &json!([ORG, ORG])
        ));
        assert!(!same_content(&json!([APP, ORG]), &json!([ORG, ORG])));
    }

    #[test]
    fn whole_floats_equal_integers() {
        assert!(same_content(&json!({"a": 1.0}), &json!({"a": 1})));
        assert!(!same_content(&json!({"a": 1.5}), &json!({"a": 1})));
    }

    #[test]
    fn uuid_detection() {
        assert!(contains_uuid(APP));
        assert!(contains_uuid(&format!(
            "prefix-{}-suffix",
            APP.to_uppercase()
        )));
        assert!(!contains_uuid("39f9a222-5cf9-486d-9e9d-7ee9964752b"));
        assert!(!contains_uuid("39f9a222x5cf9-486d-9e9d-7ee9964752b1"));
        assert!(!contains_uuid("g9f9a222-5cf9-486d-9e9d-7ee9964752b1"));
        assert!(!contains_uuid("é"));
    }

    /// Paths of every string value inside component properties of the sample.
    fn property_string_paths(value: &Value) -> Vec<Vec<String>> {
        fn walk(value: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
            match value {
                Value::String(_) => out.push(path.clone()),
                Value::Object(object) => {
                    for (key, child) in object {
                        path.push(key.clone());
                        walk(child, path, out);
                        path.pop();
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        let components = sample_export()["app"][0]["definition"]["appV2"]["components"].clone();
        for (index, component) in components.as_array().unwrap().iter().enumerate() {
            let mut path = vec![index.to_string(), "properties".to_owned()];
            walk(&component["properties"], &mut path, &mut out);
            let mut path = vec![index.to_string(), "styles".to_owned()];
            walk(&component["styles"], &mut path, &mut out);
        }
        let _ = value;
        out
    }

    fn at_path<'v>(value: &'v mut Value, path: &[String]) -> &'v mut Value {
        let mut current = &mut app_v2(value)["components"][path[0].parse::<usize>().unwrap()];
        for key in &path[1..] {
            current = &mut current[key.as_str()];
        }
        current
    }

    proptest! {
        /// Any one-to-one renaming of UUIDs, and any change of timestamps or tooljet_version,
        /// keeps the digest.
        #[test]
        fn uuid_renaming_and_timestamps_keep_the_digest(
            seed in any::<u64>(),
            stamp in "[0-9T:.Z-]{0,30}",
            version in any::<String>(),
        ) {
            let a = sample_export();
            let mut b = reimport(&a, seed);
            b["tooljet_version"] = json!(version);
            app_v2(&mut b)["createdAt"] = json!(stamp);
            app_v2(&mut b)["editingVersion"]["updatedAt"] = json!(stamp);
            app_v2(&mut b)["components"][1]["created_at"] = json!(stamp);
            prop_assert_eq!(content_digest(&a), content_digest(&b));
        }

        /// Changing any string value in a component property or style to another string that
        /// carries no UUID changes the digest.
        #[test]
        fn changing_a_property_string_changes_the_digest(
            pick in any::<prop::sample::Index>(),
            replacement in any::<String>(),
        ) {
            let a = sample_export();
            let paths = property_string_paths(&a);
            let path = &paths[pick.index(paths.len())];
            let mut b = a.clone();
            let slot = at_path(&mut b, path);
            prop_assume!(slot.as_str() != Some(replacement.as_str()));
            prop_assume!(!contains_uuid(&replacement) && !contains_uuid(slot.as_str().unwrap()));
            *slot = json!(replacement);
            prop_assert_ne!(content_digest(&a), content_digest(&b));
        }

        /// The normalized form does not depend on UUIDs for arbitrary documents either.
        #[test]
        fn arbitrary_documents_are_invariant_under_uuid_bijections(
            doc in arb_doc(),
            seed in any::<u64>(),
        ) {
            let renamed = reimport(&doc, seed);
            prop_assert!(same_content(&doc, &renamed));
        }
    }

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            Just(APP.to_owned()),
            Just(ORG.to_owned()),
            Just(format!("{{{{components.{APP}.value}}}} and {ORG}")),
            Just("\u{1}uuid:1\u{1}".to_owned()),
        ]
    }

    fn arb_doc() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i32>().prop_map(Value::from),
            arb_text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((arb_text(), inner), 0..4)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }
}
