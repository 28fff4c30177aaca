//! `.meta/meta.json`: ToolJet's record of every synced app, keyed by the git app id.
//!
//! The file is shared by every app (and every ToolJet instance) pushing to the repository, so
//! it is read-modify-written: entries other than the one being updated are kept as their exact
//! source text, and an unreadable file is an error, never replaced.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;

use super::json::to_tooljet_json;
use super::names::{app_file_path, collision_key, NameError, META_PATH};

/// Keys of a meta entry, in the order ToolJet's `writeMetaFile` writes them (note the lowercase
/// `p` of `lastpushDate`, which differs from every ToolJet DTO).
pub const META_KEYS: [&str; 6] = [
    "gitAppName",
    "lastCommitMessage",
    "gitVersionId",
    "lastpushDate",
    "gitVersionName",
    "lastCommitUser",
];

/// Why `.meta/meta.json` cannot be used; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// The file is not JSON.
    #[error(
        "{META_PATH} is not valid JSON ({message} at line {line}, column {column}); fix or remove it in the repository, it is never overwritten while unreadable"
    )]
    Syntax {
        /// serde_json's description.
        message: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The file is JSON but not an object.
    #[error(
        "{META_PATH} holds {found}, but ToolJet's layout needs an object keyed by app id; fix or remove it in the repository"
    )]
    NotAnObject {
        /// What was found instead ("an array", ...).
        found: &'static str,
    },
    /// The same app id appears twice.
    #[error(
        "{META_PATH} lists app id {id:?} more than once; remove the duplicate entry in the repository"
    )]
    DuplicateId {
        /// The repeated key.
        id: String,
    },
    /// An entry is not an object.
    #[error(
        "the entry of app id {id:?} in {META_PATH} is not an object; fix or remove that entry in the repository"
    )]
    EntryNotObject {
        /// The entry's key.
        id: String,
    },
    /// A known key of an entry holds something other than a string or null.
    #[error(
        "the entry of app id {id:?} in {META_PATH} has a non-string {field:?}; fix that entry in the repository"
    )]
    FieldType {
        /// The entry's key.
        id: String,
        /// The key whose value has the wrong type.
        field: &'static str,
    },
    /// Serializing the updated file failed (not expected with valid input).
    #[error("could not write {META_PATH}: {message}")]
    Serialize {
        /// serde_json's description.
        message: String,
    },
}

impl MetaError {
    fn from_json(err: &serde_json::Error) -> Self {
        MetaError::Syntax {
            message: strip_position(&err.to_string()),
            line: err.line(),
            column: err.column(),
        }
    }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// One entry of `.meta/meta.json` as read; fields ToolJet always writes may still be missing
/// from files written by hand or by other tools, hence the options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaEntry {
    /// `gitAppName`: the app's name and folder at its last push.
    pub git_app_name: Option<String>,
    /// `lastCommitMessage`: the message without ToolJet's "Version … Of …:" prefix.
    pub last_commit_message: Option<String>,
    /// `gitVersionId`: the ToolJet version id last pushed.
    pub git_version_id: Option<String>,
    /// `lastpushDate`: ISO-8601 UTC with milliseconds, as text.
    pub last_push_date: Option<String>,
    /// `gitVersionName`: the version last pushed, also its file name without `.json`.
    pub git_version_name: Option<String>,
    /// `lastCommitUser`: `"<first> <last>"` of the pusher.
    pub last_commit_user: Option<String>,
}

/// The values a push writes into its app's entry (all six of ToolJet's keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRecord {
    /// `gitAppName`.
    pub git_app_name: String,
    /// `lastCommitMessage` (bare message).
    pub last_commit_message: String,
    /// `gitVersionId`.
    pub git_version_id: String,
    /// `lastpushDate`, see [`format_push_date`].
    pub last_push_date: String,
    /// `gitVersionName`.
    pub git_version_name: String,
    /// `lastCommitUser`.
    pub last_commit_user: String,
}

/// Formats a push date the way ToolJet's `new Date()` serializes: `2024-03-01T10:22:33.123Z`
/// (UTC, milliseconds, truncated like JavaScript's millisecond clock).
pub fn format_push_date(date: jiff::Timestamp) -> String {
    // Floor, not truncation toward zero, so dates before 1970 round like JavaScript's too.
    let millis = i64::try_from(date.as_nanosecond().div_euclid(1_000_000)).ok();
    let truncated = millis
        .and_then(|millis| jiff::Timestamp::from_millisecond(millis).ok())
        .unwrap_or(date);
    truncated.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A parsed `.meta/meta.json` that remembers every entry's source text.
#[derive(Debug, Clone, Default)]
pub struct MetaFile {
    entries: Vec<(String, Box<RawValue>)>,
}

impl MetaFile {
    /// A meta file with no entries, for repositories that have none yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the file; any syntax or shape error is reported, so a foreign or damaged file is
    /// never silently replaced.
    pub fn parse(bytes: &[u8]) -> Result<Self, MetaError> {
        let whole: Box<RawValue> =
            serde_json::from_slice(bytes).map_err(|e| MetaError::from_json(&e))?;
        let text = whole.get();
        let found = match text.as_bytes().first() {
            Some(b'{') => None,
            Some(b'[') => Some("an array"),
            Some(b'"') => Some("a string"),
            Some(b'n') => Some("null"),
            Some(b't' | b'f') => Some("a boolean"),
            _ => Some("a number"),
        };
        if let Some(found) = found {
            return Err(MetaError::NotAnObject { found });
        }
        let RawEntries(entries) =
            serde_json::from_str(text).map_err(|e| MetaError::from_json(&e))?;
        let mut seen = HashSet::new();
        for (id, _) in &entries {
            if !seen.insert(id.as_str()) {
                return Err(MetaError::DuplicateId { id: id.clone() });
            }
        }
        Ok(Self { entries })
    }

    /// Parses optional file contents: `None` (no file yet) is an empty meta file.
    pub fn parse_optional(bytes: Option<&[u8]>) -> Result<Self, MetaError> {
        bytes.map_or_else(|| Ok(Self::new()), Self::parse)
    }

    /// App ids in file order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(id, _)| id.as_str())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The exact source text of an entry's value.
    pub fn raw_entry(&self, id: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(key, _)| key == id)
            .map(|(_, raw)| raw.get())
    }

    /// Reads an entry; `None` when the id is absent.
    pub fn entry(&self, id: &str) -> Option<Result<MetaEntry, MetaError>> {
        self.raw_entry(id).map(|raw| parse_entry(id, raw))
    }

    /// Reads every entry in file order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, Result<MetaEntry, MetaError>)> {
        self.entries
            .iter()
            .map(|(id, raw)| (id.as_str(), parse_entry(id, raw.get())))
    }

    /// Writes the entry of `id`: ToolJet's six keys in ToolJet's order, followed by any other
    /// keys the old entry had (in their old order). A new id is appended at the end, as
    /// JavaScript's object insertion does; an existing one keeps its position.
    pub fn upsert(&mut self, id: &str, record: &MetaRecord) -> Result<(), MetaError> {
        let position = self.entries.iter().position(|(key, _)| key == id);
        let mut object = Map::new();
        for (key, value) in META_KEYS.iter().zip([
            &record.git_app_name,
            &record.last_commit_message,
            &record.git_version_id,
            &record.last_push_date,
            &record.git_version_name,
            &record.last_commit_user,
        ]) {
            object.insert((*key).to_owned(), Value::String(value.clone()));
        }
        if let Some(index) = position {
            let old: Value = serde_json::from_str(self.entries[index].1.get())
                .map_err(|e| MetaError::from_json(&e))?;
            let Value::Object(old) = old else {
                return Err(MetaError::EntryNotObject { id: id.to_owned() });
            };
            for (key, value) in old {
                if !META_KEYS.contains(&key.as_str()) {
                    object.insert(key, value);
                }
            }
        }
        let raw = entry_text(&Value::Object(object))?;
        match position {
            Some(index) => self.entries[index].1 = raw,
            None => self.entries.push((id.to_owned(), raw)),
        }
        Ok(())
    }

    /// The file's bytes as `JSON.stringify(meta, null, 2)` prints them, with untouched entries
    /// copied from their source text.
    pub fn to_bytes(&self) -> Result<Vec<u8>, MetaError> {
        if self.entries.is_empty() {
            return Ok(b"{}".to_vec());
        }
        let mut out = String::from("{\n");
        for (index, (id, raw)) in self.entries.iter().enumerate() {
            if index > 0 {
                out.push_str(",\n");
            }
            let key = serde_json::to_string(id).map_err(|e| MetaError::Serialize {
                message: e.to_string(),
            })?;
            out.push_str("  ");
            out.push_str(&key);
            out.push_str(": ");
            out.push_str(raw.get());
        }
        out.push_str("\n}");
        Ok(out.into_bytes())
    }
}

/// Serializes an entry as it appears one level deep in a 2-space indented object.
fn entry_text(value: &Value) -> Result<Box<RawValue>, MetaError> {
    let serialize_error = |e: serde_json::Error| MetaError::Serialize {
        message: e.to_string(),
    };
    let pretty = to_tooljet_json(value).map_err(serialize_error)?;
    let pretty = String::from_utf8(pretty).map_err(|e| MetaError::Serialize {
        message: e.to_string(),
    })?;
    // Raw newlines only occur between tokens (newlines inside strings are escaped).
    RawValue::from_string(pretty.replace('\n', "\n  ")).map_err(serialize_error)
}

fn parse_entry(id: &str, raw: &str) -> Result<MetaEntry, MetaError> {
    let value: Value = serde_json::from_str(raw).map_err(|e| MetaError::from_json(&e))?;
    let Value::Object(object) = value else {
        return Err(MetaError::EntryNotObject { id: id.to_owned() });
    };
    let field = |name: &'static str| -> Result<Option<String>, MetaError> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(MetaError::FieldType {
                id: id.to_owned(),
                field: name,
            }),
        }
    };
    Ok(MetaEntry {
        git_app_name: field("gitAppName")?,
        last_commit_message: field("lastCommitMessage")?,
        git_version_id: field("gitVersionId")?,
        last_push_date: field("lastpushDate")?,
        git_version_name: field("gitVersionName")?,
        last_commit_user: field("lastCommitUser")?,
    })
}

/// Top-level entries with their raw values, in file order.
struct RawEntries(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for RawEntries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = RawEntries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object keyed by app id")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEntries, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: Box<RawValue> = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(RawEntries(entries))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<RawEntries, A::Error> {
                Err(de::Error::invalid_type(de::Unexpected::Seq, &self))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// How pull finds an app in `.meta/meta.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppLookup<'a> {
    /// By `gitAppName` (exact, case-sensitive, like ToolJet's folder names).
    ByName(&'a str),
    /// By the meta key, the git app id.
    ByGitAppId(&'a str),
}

impl<'a> AppLookup<'a> {
    /// The lookup a Pull AppSync's `spec.app` asks for: `id:<git app id>`, else a name.
    pub fn of_spec(app: &'a str) -> Self {
        match app.strip_prefix("id:") {
            Some(id) => AppLookup::ByGitAppId(id),
            None => AppLookup::ByName(app),
        }
    }
}

impl fmt::Display for AppLookup<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppLookup::ByName(name) => write!(f, "app name {name:?}"),
            AppLookup::ByGitAppId(id) => write!(f, "git app id {id:?}"),
        }
    }
}

/// An app found in `.meta/meta.json`, with the path of its version file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The meta key.
    pub git_app_id: String,
    /// `gitAppName`, also the folder.
    pub app_name: String,
    /// `gitVersionName`, also the file name without `.json`.
    pub version_name: String,
    /// `gitVersionId`.
    pub version_id: String,
    /// `<app_name>/<version_name>.json`.
    pub path: String,
    /// `lastCommitMessage`.
    pub last_commit_message: Option<String>,
    /// `lastCommitUser`.
    pub last_commit_user: Option<String>,
    /// `lastpushDate` as written (ISO-8601 text).
    pub last_push_date: Option<String>,
}

/// Why pull could not find an app; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// The repository has no `.meta/meta.json`.
    #[error("the repository has no {META_PATH}, so it holds no app pushed by ToolJet GitSync; push the app first")]
    NoMeta,
    /// The meta file is unreadable.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// No entry matches.
    #[error("{lookup} is not in {META_PATH}{hint}; push the app to this repository first or check the name")]
    NotFound {
        /// What was looked for, for the message.
        lookup: String,
        /// Names that match case-insensitively, as a hint (may be empty).
        hint: String,
    },
    /// Several entries carry the same name.
    #[error("{META_PATH} has several apps named {name:?} (git app ids {ids:?}); select the app by id instead of by name")]
    Ambiguous {
        /// The name looked for.
        name: String,
        /// The ids of all entries with that name.
        ids: Vec<String>,
    },
    /// The entry lacks a field needed to find the file.
    #[error("the entry of git app id {id:?} in {META_PATH} has no {field:?}; push the app again from ToolJet to repair it")]
    Incomplete {
        /// The entry's key.
        id: String,
        /// The missing key.
        field: &'static str,
    },
    /// The recorded names cannot be used as a path.
    #[error("the entry of git app id {id:?} in {META_PATH} names an unsafe path: {source}")]
    UnsafeName {
        /// The entry's key.
        id: String,
        /// What is wrong with the name.
        source: NameError,
    },
}

/// Finds an app in `.meta/meta.json` for pull, with the path of its version file.
pub fn locate_app(meta_bytes: Option<&[u8]>, by: AppLookup<'_>) -> Result<Located, LocateError> {
    let meta = MetaFile::parse(meta_bytes.ok_or(LocateError::NoMeta)?)?;
    let (id, entry) = match by {
        AppLookup::ByGitAppId(wanted) => match meta.entry(wanted) {
            Some(entry) => (wanted.to_owned(), entry?),
            None => {
                return Err(LocateError::NotFound {
                    lookup: by.to_string(),
                    hint: String::new(),
                })
            }
        },
        AppLookup::ByName(wanted) => {
            let mut exact = Vec::new();
            let mut similar = Vec::new();
            for (id, entry) in meta.entries() {
                // An unreadable entry cannot be the one named; it is reported only if asked by id.
                let Ok(entry) = entry else { continue };
                match entry.git_app_name.as_deref() {
                    Some(name) if name == wanted => exact.push((id.to_owned(), entry)),
                    Some(name) if collision_key(name) == collision_key(wanted) => {
                        similar.push(format!("{name:?}"));
                    }
                    _ => {}
                }
            }
            match exact.len() {
                1 => exact.remove(0),
                0 => {
                    let hint = if similar.is_empty() {
                        String::new()
                    } else {
                        format!(" (similar: {})", similar.join(", "))
                    };
                    return Err(LocateError::NotFound {
                        lookup: by.to_string(),
                        hint,
                    });
                }
                _ => {
                    return Err(LocateError::Ambiguous {
                        name: wanted.to_owned(),
                        ids: exact.into_iter().map(|(id, _)| id).collect(),
                    })
                }
            }
        }
    };
    let require = |value: Option<String>, field: &'static str| {
        value.ok_or_else(|| LocateError::Incomplete {
            id: id.clone(),
            field,
        })
    };
    let app_name = require(entry.git_app_name, "gitAppName")?;
    let version_name = require(entry.git_version_name, "gitVersionName")?;
    let version_id = require(entry.git_version_id, "gitVersionId")?;
    let path =
        app_file_path(&app_name, &version_name).map_err(|source| LocateError::UnsafeName {
            id: id.clone(),
            source,
        })?;
    Ok(Located {
        git_app_id: id,
        app_name,
        version_name,
        version_id,
        path,
        last_commit_message: entry.last_commit_message,
        last_commit_user: entry.last_commit_user,
        last_push_date: entry.last_push_date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const TOOLJET_META: &str = r#"{
  "ab65b201-4207-4876-a8a6-fdcbf31661b6": {
    "gitAppName": "Sales Dashboard",
    "lastCommitMessage": "add filter to table",
    "gitVersionId": "ab40f07f-96c7-4283-afb8-8cd88df7b195",
    "lastpushDate": "2024-03-01T10:22:33.123Z",
    "gitVersionName": "v3",
    "lastCommitUser": "Jane Doe"
  },
  "0d0f5d47-3c3e-4d8e-9a53-cd3f2c1b7a10": {
    "gitAppName": "Inventory",
    "lastCommitMessage": "App creation",
    "gitVersionId": "5b7c6a0e-8f0e-4d2a-9c41-2e9f0b6d3a77",
    "lastpushDate": "2024-02-11T08:00:00.000Z",
    "gitVersionName": "v1",
    "lastCommitUser": "Sam "
  }
}"#;

    fn record(name: &str) -> MetaRecord {
        MetaRecord {
            git_app_name: name.to_owned(),
            last_commit_message: "msg".to_owned(),
            git_version_id: "vid".to_owned(),
            last_push_date: "2024-05-06T07:08:09.010Z".to_owned(),
            git_version_name: "v9".to_owned(),
            last_commit_user: "Jane Doe".to_owned(),
        }
    }

    #[test]
    fn round_trips_a_tooljet_file_byte_for_byte() {
        let meta = MetaFile::parse(TOOLJET_META.as_bytes()).unwrap();
        assert_eq!(meta.to_bytes().unwrap(), TOOLJET_META.as_bytes());
        let ids: Vec<_> = meta.ids().collect();
        assert_eq!(
            ids,
            [
                "ab65b201-4207-4876-a8a6-fdcbf31661b6",
                "0d0f5d47-3c3e-4d8e-9a53-cd3f2c1b7a10"
            ]
        );
        let entry = meta
            .entry("ab65b201-4207-4876-a8a6-fdcbf31661b6")
            .unwrap()
            .unwrap();
        assert_eq!(entry.git_app_name.as_deref(), Some("Sales Dashboard"));
        assert_eq!(
            entry.last_push_date.as_deref(),
            Some("2024-03-01T10:22:33.123Z")
        );
    }

    #[test]
    fn upsert_matches_json_stringify_and_keeps_others() {
        let mut meta = MetaFile::parse(TOOLJET_META.as_bytes()).unwrap();
        meta.upsert("new-id", &record("Third")).unwrap();
        let bytes = meta.to_bytes().unwrap();
        // The whole file is what JSON.stringify(meta, null, 2) would print.
        let mut expected: Value = serde_json::from_str(TOOLJET_META).unwrap();
        expected["new-id"] = json!({
            "gitAppName": "Third",
            "lastCommitMessage": "msg",
            "gitVersionId": "vid",
            "lastpushDate": "2024-05-06T07:08:09.010Z",
            "gitVersionName": "v9",
            "lastCommitUser": "Jane Doe"
        });
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            String::from_utf8(to_tooljet_json(&expected).unwrap()).unwrap()
        );
        // Updating an existing entry keeps its position.
        let mut meta = MetaFile::parse(&bytes).unwrap();
        meta.upsert("ab65b201-4207-4876-a8a6-fdcbf31661b6", &record("Renamed"))
            .unwrap();
        let ids: Vec<_> = meta.ids().map(str::to_owned).collect();
        assert_eq!(ids[0], "ab65b201-4207-4876-a8a6-fdcbf31661b6");
        assert_eq!(
            meta.raw_entry("0d0f5d47-3c3e-4d8e-9a53-cd3f2c1b7a10"),
            MetaFile::parse(TOOLJET_META.as_bytes())
                .unwrap()
                .raw_entry("0d0f5d47-3c3e-4d8e-9a53-cd3f2c1b7a10")
        );
    }

    #[test]
    fn upsert_keeps_unknown_keys_after_tooljets() {
        let source = br#"{"a":{"extra":1,"gitAppName":"Old","lastpushDate":"x","note":{"k":[1]}},"b":{"gitAppName":"B"   }}"#;
        let mut meta = MetaFile::parse(source).unwrap();
        meta.upsert("a", &record("New")).unwrap();
        let text = String::from_utf8(meta.to_bytes().unwrap()).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<_> = value["a"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "gitAppName",
                "lastCommitMessage",
                "gitVersionId",
                "lastpushDate",
                "gitVersionName",
                "lastCommitUser",
                "extra",
                "note"
            ]
        );
        assert_eq!(value["a"]["note"], json!({"k": [1]}));
        // Foreign formatting of the other entry survives byte for byte.
        assert!(text.contains(r#""b": {"gitAppName":"B"   }"#), "{text}");
    }

    #[test]
    fn empty_and_new_files() {
        let mut meta = MetaFile::parse_optional(None).unwrap();
        assert!(meta.is_empty());
        assert_eq!(meta.to_bytes().unwrap(), b"{}");
        meta.upsert("id", &record("A")).unwrap();
        let text = String::from_utf8(meta.to_bytes().unwrap()).unwrap();
        assert_eq!(
            text,
            "{\n  \"id\": {\n    \"gitAppName\": \"A\",\n    \"lastCommitMessage\": \"msg\",\n    \"gitVersionId\": \"vid\",\n    \"lastpushDate\": \"2024-05-06T07:08:09.010Z\",\n    \"gitVersionName\": \"v9\",\n    \"lastCommitUser\": \"Jane Doe\"\n  }\n}"
        );
        assert_eq!(MetaFile::parse(b" {} ").unwrap().len(), 0);
    }

    #[test]
    fn broken_files_are_typed_errors() {
        let err = MetaFile::parse(b"{\"a\": {").unwrap_err();
        assert!(matches!(err, MetaError::Syntax { line: 1, .. }), "{err:?}");
        assert!(err.to_string().contains("never overwritten"));
        assert!(matches!(
            MetaFile::parse(b"").unwrap_err(),
            MetaError::Syntax { .. }
        ));
        assert!(matches!(
            MetaFile::parse(b"\xEF\xBB\xBF{}").unwrap_err(),
            MetaError::Syntax { .. }
        ));
        assert!(matches!(
            MetaFile::parse(b"\xff").unwrap_err(),
            MetaError::Syntax { .. }
        ));
        assert_eq!(
            MetaFile::parse(b"[]").unwrap_err(),
            MetaError::NotAnObject { found: "an array" }
        );
        assert_eq!(
            MetaFile::parse(b"null").unwrap_err(),
            MetaError::NotAnObject { found: "null" }
        );
        assert_eq!(
            MetaFile::parse(br#"{"a":{},"a":{}}"#).unwrap_err(),
            MetaError::DuplicateId { id: "a".into() }
        );
        let meta = MetaFile::parse(br#"{"a":5,"b":{"gitAppName":7}}"#).unwrap();
        assert_eq!(
            meta.entry("a").unwrap().unwrap_err(),
            MetaError::EntryNotObject { id: "a".into() }
        );
        assert_eq!(
            meta.entry("b").unwrap().unwrap_err(),
            MetaError::FieldType {
                id: "b".into(),
                field: "gitAppName"
            }
        );
        let mut meta = meta;
        assert_eq!(
            meta.upsert("a", &record("X")).unwrap_err(),
            MetaError::EntryNotObject { id: "a".into() }
        );
    }

    #[test]
    fn push_dates_look_like_javascript() {
        let date: jiff::Timestamp = "2024-03-01T10:22:33.123456789Z".parse().unwrap();
        assert_eq!(format_push_date(date), "2024-03-01T10:22:33.123Z");
        let date: jiff::Timestamp = "2024-03-01T10:22:33Z".parse().unwrap();
        assert_eq!(format_push_date(date), "2024-03-01T10:22:33.000Z");
        let date: jiff::Timestamp = "1969-12-31T23:59:59.9999Z".parse().unwrap();
        assert_eq!(format_push_date(date), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn locate_by_name_and_id() {
        let bytes = Some(TOOLJET_META.as_bytes());
        let found = locate_app(bytes, AppLookup::ByName("Sales Dashboard")).unwrap();
        assert_eq!(
            found,
            Located {
                git_app_id: "ab65b201-4207-4876-a8a6-fdcbf31661b6".into(),
                app_name: "Sales Dashboard".into(),
                version_name: "v3".into(),
                version_id: "ab40f07f-96c7-4283-afb8-8cd88df7b195".into(),
                path: "Sales Dashboard/v3.json".into(),
                last_commit_message: Some("add filter to table".into()),
                last_commit_user: Some("Jane Doe".into()),
                last_push_date: Some("2024-03-01T10:22:33.123Z".into()),
            }
        );
        let by_id = locate_app(
            bytes,
            AppLookup::ByGitAppId("0d0f5d47-3c3e-4d8e-9a53-cd3f2c1b7a10"),
        )
        .unwrap();
        assert_eq!(by_id.path, "Inventory/v1.json");
        assert_eq!(by_id.last_commit_user.as_deref(), Some("Sam "));
    }

    #[test]
    fn locate_errors() {
        let bytes = Some(TOOLJET_META.as_bytes());
        assert_eq!(
            locate_app(None, AppLookup::ByName("x")).unwrap_err(),
            LocateError::NoMeta
        );
        let err = locate_app(bytes, AppLookup::ByName("sales dashboard")).unwrap_err();
        assert!(
            err.to_string().contains("similar: \"Sales Dashboard\""),
            "{err}"
        );
        assert!(matches!(
            locate_app(bytes, AppLookup::ByGitAppId("nope")).unwrap_err(),
            LocateError::NotFound { .. }
        ));
        let twice = br#"{"a":{"gitAppName":"X","gitVersionName":"v1","gitVersionId":"1"},"b":{"gitAppName":"X","gitVersionName":"v2","gitVersionId":"2"}}"#;
        assert_eq!(
            locate_app(Some(twice), AppLookup::ByName("X")).unwrap_err(),
            LocateError::Ambiguous {
                name: "X".into(),
                ids: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            locate_app(Some(twice), AppLookup::ByGitAppId("b"))
                .unwrap()
                .path,
            "X/v2.json"
        );
        let incomplete = br#"{"a":{"gitAppName":"X","gitVersionId":"1"}}"#;
        assert_eq!(
            locate_app(Some(incomplete), AppLookup::ByName("X")).unwrap_err(),
            LocateError::Incomplete {
                id: "a".into(),
                field: "gitVersionName"
            }
        );
        let unsafe_name =
            br#"{"a":{"gitAppName":"../etc","gitVersionName":"v1","gitVersionId":"1"}}"#;
        let err = locate_app(Some(unsafe_name), AppLookup::ByGitAppId("a")).unwrap_err();
        assert!(matches!(err, LocateError::UnsafeName { .. }), "{err:?}");
        let unsafe_version =
            br#"{"a":{"gitAppName":"A","gitVersionName":"../../x","gitVersionId":"1"}}"#;
        assert!(matches!(
            locate_app(Some(unsafe_version), AppLookup::ByName("A")).unwrap_err(),
            LocateError::UnsafeName { .. }
        ));
        assert!(matches!(
            locate_app(Some(b"nope"), AppLookup::ByName("A")).unwrap_err(),
            LocateError::Meta(MetaError::Syntax { .. })
        ));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..4)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    fn arb_meta() -> impl Strategy<Value = Vec<(String, Value)>> {
        prop::collection::vec((any::<String>(), arb_json()), 0..6).prop_map(|pairs| {
            let mut seen = HashSet::new();
            pairs
                .into_iter()
                .filter(|(id, _)| seen.insert(id.clone()))
                .collect()
        })
    }

    proptest! {
        /// Read-modify-write keeps every other entry's text byte for byte, whatever its
        /// content, in ToolJet's formatting and in compact formatting.
        #[test]
        fn upsert_preserves_other_entries(
            entries in arb_meta(),
            target in any::<String>(),
            pick_existing in any::<prop::sample::Index>(),
            new_id in any::<bool>(),
            compact in any::<bool>(),
        ) {
            let object: Map<String, Value> = entries.iter().cloned().collect();
            let source = if compact {
                serde_json::to_vec(&Value::Object(object.clone())).unwrap()
            } else {
                to_tooljet_json(&Value::Object(object.clone())).unwrap()
            };
            let before = MetaFile::parse(&source).unwrap();
            let target = if entries.is_empty() || (new_id && !object.contains_key(&target)) {
                target
            } else {
                entries[pick_existing.index(entries.len())].0.clone()
            };
            let mut after = before.clone();
            match after.upsert(&target, &record("App")) {
                Ok(()) => {}
                // Only an existing non-object entry may refuse, and then nothing changes.
                Err(MetaError::EntryNotObject { .. }) => {
                    prop_assert!(!object[&target].is_object());
                    return Ok(());
                }
                Err(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
            }
            let bytes = after.to_bytes().unwrap();
            let reparsed = MetaFile::parse(&bytes).unwrap();
            for (id, _) in &entries {
                if *id != target {
                    prop_assert_eq!(reparsed.raw_entry(id), before.raw_entry(id));
                }
            }
            let order_before: Vec<_> = before.ids().filter(|id| *id != target).collect();
            let order_after: Vec<_> = reparsed.ids().filter(|id| *id != target).collect();
            prop_assert_eq!(order_before, order_after);
            let entry = reparsed.entry(&target).unwrap().unwrap();
            prop_assert_eq!(entry.git_app_name.as_deref(), Some("App"));
            if !compact {
                // ToolJet-formatted input gives exactly JSON.stringify's output.
                let mut expected = object.clone();
                let mut new_entry = Map::new();
                for key in META_KEYS {
                    new_entry.insert(key.to_owned(), reparsed_value(&bytes, &target, key));
                }
                if let Some(Value::Object(old)) = object.get(&target) {
                    for (key, value) in old {
                        if !META_KEYS.contains(&key.as_str()) {
                            new_entry.insert(key.clone(), value.clone());
                        }
                    }
                }
                expected.insert(target.clone(), Value::Object(new_entry));
                prop_assert_eq!(bytes, to_tooljet_json(&Value::Object(expected)).unwrap());
            }
        }
    }

    fn reparsed_value(bytes: &[u8], id: &str, key: &str) -> Value {
        let value: Value = serde_json::from_slice(bytes).unwrap();
        value[id][key].clone()
    }
}
