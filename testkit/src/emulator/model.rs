//! The emulator's data model: workspaces, apps, versions, constants, sessions, faults, and the
//! ToolJet export JSON built from them. Pure data handling, no HTTP.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::EmulatorConfig;

/// A workspace (ToolJet "organization").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceRec {
    pub id: String,
    pub name: String,
    pub slug: String,
    /// Ids of the workspace's `development`, `staging`, `production` environments.
    pub environments: [String; 3],
}

/// One version of an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRec {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

/// An app with its definition content.
#[derive(Clone, Debug, PartialEq)]
pub struct AppRec {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub slug: String,
    /// Oldest first; the last one is the editing (latest) version.
    pub versions: Vec<VersionRec>,
    /// The `appV2` object without the app-level fields (id, name, slug, versions, ...):
    /// components, pages, events, dataQueries, dataSources, ... with their own ids.
    pub content: Value,
    /// GitSync's `allow_editing`.
    pub editable: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A workspace constant as tests see it: `value` is the default (production) environment's
/// real value, `values` every environment's real value by environment name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstantRec {
    pub id: String,
    pub name: String,
    pub secret: bool,
    pub value: String,
    pub values: BTreeMap<String, String>,
}

/// A stored constant (`organization_constants` + `org_environment_constant_values`): real
/// values per environment id; `''` where nothing was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredConstant {
    pub id: String,
    pub name: String,
    pub secret: bool,
    pub values: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
}

/// An environment of a workspace (`app_environments`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvironmentRec {
    pub id: String,
    pub name: String,
    pub priority: u32,
    pub is_default: bool,
}

/// One option of a data source in one environment. For an encrypted option `value` is the
/// real (decrypted) credential, which no route ever returns.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSourceOption {
    pub value: Option<Value>,
    pub encrypted: bool,
    pub credential_id: Option<String>,
}

/// A global data source (3.x `data_sources` + `data_source_options`).
#[derive(Clone, Debug, PartialEq)]
pub struct DataSourceRec {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub kind: String,
    /// `default` or `sample`.
    pub ds_type: String,
    pub plugin_id: Option<String>,
    /// Options per environment id, in the order they were written.
    pub options: BTreeMap<String, Vec<(String, DataSourceOption)>>,
    pub created_at: String,
    pub updated_at: String,
}

impl DataSourceRec {
    /// The stored option `key` in environment `env_id`.
    pub fn option(&self, env_id: &str, key: &str) -> Option<&DataSourceOption> {
        self.options
            .get(env_id)?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, o)| o)
    }
}

/// One `PUT /api/data-sources/:id` as the emulator applied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSourceWrite {
    pub data_source_id: String,
    /// Environment ids written (all of them in Community Edition).
    pub environments: Vec<String>,
    /// Option keys sent, in order.
    pub keys: Vec<String>,
}

/// What an injected fault does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this status (body `{statusCode, message:"Injected fault"}`) instead of
    /// handling the request.
    Status(u16),
    /// Wait this long, then handle the request normally.
    Delay(Duration),
    /// Handle the request (its effects happen), then answer this status instead: an answer
    /// lost after the server did the work.
    StatusAfterHandling(u16),
}

/// Makes matching requests fail or stall: `method` (`"*"` = any) and `path` pattern (`*` = one
/// segment, `**` = the rest), skipping the first `skip` matches, then acting `times` times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub method: String,
    pub path: String,
    pub action: FaultAction,
    pub skip: u32,
    pub times: u32,
}

impl Fault {
    /// Answer `status` on the next matching request.
    pub fn status(method: &str, path: &str, status: u16) -> Fault {
        Fault {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            action: FaultAction::Status(status),
            skip: 0,
            times: 1,
        }
    }

    /// Delay the next matching request by `delay`.
    pub fn delay(method: &str, path: &str, delay: Duration) -> Fault {
        Fault {
            action: FaultAction::Delay(delay),
            ..Fault::status(method, path, 0)
        }
    }

    /// Handle the next matching request, then answer `status` instead of the real answer.
    pub fn status_after_handling(method: &str, path: &str, status: u16) -> Fault {
        Fault {
            action: FaultAction::StatusAfterHandling(status),
            ..Fault::status(method, path, status)
        }
    }

    /// Act on `n` matching requests instead of one.
    pub fn times(mut self, n: u32) -> Fault {
        self.times = n;
        self
    }

    /// Let the first `n` matching requests through unharmed.
    pub fn after(mut self, n: u32) -> Fault {
        self.skip = n;
        self
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        (self.method == "*" || self.method.eq_ignore_ascii_case(method))
            && path_matches(&self.path, path)
    }
}

/// `*` matches one segment, `**` the rest of the path.
pub(crate) fn path_matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    for (i, p) in pat.iter().enumerate() {
        if *p == "**" {
            return true;
        }
        match segs.get(i) {
            Some(s) if *p == "*" || p == s => {}
            _ => return false,
        }
    }
    pat.len() == segs.len()
}

/// One handled request, for tests to assert on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub status: u16,
}

pub(crate) struct Session {
    pub orgs: BTreeSet<String>,
}

/// The whole emulated ToolJet.
pub(crate) struct State {
    pub config: EmulatorConfig,
    pub user_id: String,
    pub instance_id: String,
    pub workspaces: Vec<WorkspaceRec>,
    pub apps: Vec<AppRec>,
    pub constants: HashMap<String, Vec<StoredConstant>>,
    pub data_sources: Vec<DataSourceRec>,
    pub data_source_writes: Vec<DataSourceWrite>,
    pub sessions: HashMap<String, Session>,
    pub faults: Vec<Fault>,
    pub requests: Vec<RequestRecord>,
    /// Requests as they arrived, before any fault or handling.
    pub arrivals: Vec<RequestRecord>,
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn now() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

pub(crate) fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// Keys of `appV2` that belong to the app row rather than its content.
const APP_LEVEL_KEYS: &[&str] = &[
    "type",
    "id",
    "name",
    "slug",
    "isMaintenanceOn",
    "organizationId",
    "currentVersionId",
    "userId",
    "workflowApiToken",
    "workflowEnabled",
    "createdAt",
    "creationMode",
    "updatedAt",
    "editingVersion",
    "appVersions",
    "appEnvironments",
];

/// Accepts a full export, a `{appV2}` definition or an `appV2` object and returns the `appV2`.
pub(crate) fn content_source(definition: &Value) -> Value {
    if let Some(apps) = definition.get("app").and_then(Value::as_array) {
        apps.first()
            .and_then(|a| a.get("definition"))
            .and_then(|d| d.get("appV2"))
            .cloned()
            .unwrap_or(Value::Null)
    } else if let Some(v) = definition.get("appV2") {
        v.clone()
    } else {
        definition.clone()
    }
}

/// Accepts a full export, a `{appV2}` definition, an `appV2` object or bare content and returns
/// the content part.
pub(crate) fn content_of(definition: &Value) -> Value {
    let app_v2 = content_source(definition);
    let mut map = app_v2.as_object().cloned().unwrap_or_default();
    for k in APP_LEVEL_KEYS {
        map.remove(*k);
    }
    Value::Object(map)
}

/// Version names carried by an `appV2` (appVersions, else editingVersion), oldest first.
pub(crate) fn version_names_of(app_v2: &Value) -> Vec<String> {
    let mut names: Vec<String> = app_v2
        .get("appVersions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        if let Some(n) = app_v2
            .get("editingVersion")
            .and_then(|v| v.get("name"))
            .and_then(Value::as_str)
        {
            names.push(n.to_string());
        }
    }
    if names.is_empty() {
        names.push("v1".into());
    }
    names
}

/// Gives every UUID inside `value` (in strings and keys) a fresh one, consistently, and stamps
/// `createdAt`/`updatedAt` with `stamp`: what a real import does to ids and timestamps.
pub(crate) fn refresh_ids(value: &Value, stamp: &str) -> Value {
    fn map_str(s: &str, ids: &mut HashMap<String, String>) -> String {
        let bytes = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            if i + 36 <= s.len() && s.is_char_boundary(i) && s.is_char_boundary(i + 36) {
                let cand = &s[i..i + 36];
                let boundary_ok = (i == 0 || !bytes[i - 1].is_ascii_hexdigit())
                    && (i + 36 == s.len() || !bytes[i + 36].is_ascii_hexdigit());
                if boundary_ok && is_uuid(cand) {
                    let fresh = ids
                        .entry(cand.to_ascii_lowercase())
                        .or_insert_with(new_id)
                        .clone();
                    out.push_str(&fresh);
                    i += 36;
                    continue;
                }
            }
            let ch = s[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8().max(1);
        }
        out
    }
    fn walk(v: &Value, ids: &mut HashMap<String, String>, stamp: &str) -> Value {
        match v {
            Value::String(s) => Value::String(map_str(s, ids)),
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, ids, stamp)).collect()),
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, x) in m {
                    let nv = if (k == "createdAt" || k == "updatedAt") && x.is_string() {
                        Value::String(stamp.to_string())
                    } else {
                        walk(x, ids, stamp)
                    };
                    out.insert(map_str(k, ids), nv);
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }
    walk(value, &mut HashMap::new(), stamp)
}

/// A small but realistic app: two pages, a table fed by a REST query whose URL uses
/// `{{constants.API_BASE_URL}}` and whose header uses `{{secrets.ORDERS_API_KEY}}`, a button
/// event, layouts and data sources, all with their own ids and timestamps.
pub fn sample_content(title: &str, environment_id: &str) -> Value {
    let t = now();
    let home = new_id();
    let details = new_id();
    let text1 = new_id();
    let table1 = new_id();
    let button1 = new_id();
    let text2 = new_id();
    let static_ds = new_id();
    let rest_ds = new_id();
    let query = new_id();
    let layout = |component: &str, top: u32, left: u32, width: u32, height: u32| {
        json!([
            {"id": new_id(), "type": "desktop", "top": top, "left": left, "width": width, "height": height, "componentId": component},
            {"id": new_id(), "type": "mobile", "top": top, "left": 0, "width": 43, "height": height, "componentId": component}
        ])
    };
    let component =
        |id: &str, name: &str, kind: &str, page: &str, properties: Value, lay: Value| {
            json!({
                "id": id, "name": name, "type": kind, "pageId": page, "parent": null,
                "properties": properties, "styles": {}, "general": null, "generalStyles": null,
                "displayPreferences": null, "validation": {}, "permissions": [],
                "createdAt": t, "updatedAt": t, "layouts": lay
            })
        };
    json!({
        "isPublic": false,
        "icon": "home",
        "components": [
            component(&text1, "text1", "Text", &home,
                json!({"text": {"value": format!("Welcome to {title}")}}), layout(&text1, 30, 2, 20, 40)),
            component(&table1, "table1", "Table", &home,
                json!({"data": {"value": "{{queries.listOrders.data}}"}, "title": {"value": "Orders"}}), layout(&table1, 90, 2, 40, 456)),
            component(&button1, "button1", "Button", &home,
                json!({"text": {"value": "Refresh"}, "visible": {"value": "{{true}}"}}), layout(&button1, 560, 2, 6, 40)),
            component(&text2, "apiHint", "Text", &details,
                json!({"text": {"value": "Data from {{constants.API_BASE_URL}}"}}), layout(&text2, 30, 2, 20, 40))
        ],
        "pages": [
            {"id": home, "name": "Home", "handle": "home", "index": 0, "disabled": false, "hidden": false, "createdAt": t, "updatedAt": t},
            {"id": details, "name": "Details", "handle": "details", "index": 1, "disabled": false, "hidden": false, "createdAt": t, "updatedAt": t}
        ],
        "events": [
            {"id": new_id(), "name": "onClick", "index": 0, "sourceId": button1, "target": "component",
             "event": {"eventId": "onClick", "actionId": "run-query", "queryId": query, "queryName": "listOrders"},
             "createdAt": t, "updatedAt": t}
        ],
        "dataQueries": [
            {"id": query, "name": "listOrders", "kind": "restapi", "dataSourceId": rest_ds,
             "options": {"method": "get", "url": "{{constants.API_BASE_URL}}/orders",
                         "headers": [["Authorization", "Bearer {{secrets.ORDERS_API_KEY}}"]],
                         "runOnPageLoad": true},
             "createdAt": t, "updatedAt": t}
        ],
        "dataSources": [
            {"id": static_ds, "name": "restapidefault", "kind": "restapi", "type": "static", "scope": "local", "createdAt": t, "updatedAt": t},
            {"id": rest_ds, "name": "orders_api", "kind": "restapi", "type": "default", "scope": "local", "createdAt": t, "updatedAt": t}
        ],
        "dataQueryFolders": [],
        "dataSourceOptions": [
            {"id": new_id(), "dataSourceId": rest_ds, "environmentId": environment_id,
             "options": {"url": {"value": "{{constants.API_BASE_URL}}", "encrypted": false}},
             "createdAt": t, "updatedAt": t}
        ],
        "schemaDetails": {"multiPages": true, "multiEnv": true, "globalDataSources": true}
    })
}

/// Which versions an export carries.
pub(crate) enum VersionSelection<'a> {
    Latest,
    Named(&'a VersionRec),
    All,
}

fn first_page_id(content: &Value) -> Value {
    content
        .get("pages")
        .and_then(Value::as_array)
        .and_then(|p| p.first())
        .and_then(|p| p.get("id"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn version_json(app: &AppRec, ws: &WorkspaceRec, v: &VersionRec) -> Value {
    json!({
        "id": v.id,
        "name": v.name,
        "definition": null,
        "globalSettings": {
            "hideHeader": false, "appInMaintenance": false, "canvasMaxWidth": 100,
            "canvasMaxWidthType": "%", "canvasMaxHeight": 2400,
            "canvasBackgroundColor": "#edeff5", "backgroundFxQuery": "", "appMode": "auto"
        },
        "pageSettings": null,
        "showViewerNavigation": true,
        "homePageId": first_page_id(&app.content),
        "appId": app.id,
        "currentEnvironmentId": ws.environments[0],
        "promotedFrom": null,
        "createdAt": v.created_at,
        "updatedAt": app.updated_at
    })
}

/// The export JSON exactly as ToolJet shapes it (reference §2).
pub(crate) fn export_json(
    app: &AppRec,
    ws: &WorkspaceRec,
    user_id: &str,
    selection: VersionSelection<'_>,
    tooljet_version: &str,
) -> Value {
    let latest = app.versions.last();
    let versions: Vec<&VersionRec> = match selection {
        VersionSelection::Latest => latest.into_iter().collect(),
        VersionSelection::Named(v) => vec![v],
        VersionSelection::All => app.versions.iter().collect(),
    };
    let editing = versions.last().copied().or(latest);
    let mut app_v2 = Map::new();
    app_v2.insert("type".into(), json!("front-end"));
    app_v2.insert("id".into(), json!(app.id));
    app_v2.insert("name".into(), json!(app.name));
    app_v2.insert("slug".into(), json!(app.slug));
    app_v2.insert(
        "isPublic".into(),
        app.content.get("isPublic").cloned().unwrap_or(json!(false)),
    );
    app_v2.insert("isMaintenanceOn".into(), json!(false));
    app_v2.insert(
        "icon".into(),
        app.content.get("icon").cloned().unwrap_or(json!("home")),
    );
    app_v2.insert("organizationId".into(), json!(ws.id));
    app_v2.insert("currentVersionId".into(), Value::Null);
    app_v2.insert("userId".into(), json!(user_id));
    app_v2.insert("workflowApiToken".into(), Value::Null);
    app_v2.insert("workflowEnabled".into(), json!(false));
    app_v2.insert("createdAt".into(), json!(app.created_at));
    app_v2.insert("creationMode".into(), json!("DEFAULT"));
    app_v2.insert("updatedAt".into(), json!(app.updated_at));
    app_v2.insert(
        "editingVersion".into(),
        editing
            .map(|v| version_json(app, ws, v))
            .unwrap_or(Value::Null),
    );
    if let Some(content) = app.content.as_object() {
        for (k, v) in content {
            if k != "isPublic" && k != "icon" {
                app_v2.insert(k.clone(), v.clone());
            }
        }
    }
    app_v2.insert(
        "appVersions".into(),
        Value::Array(versions.iter().map(|v| version_json(app, ws, v)).collect()),
    );
    let env_names = ["development", "staging", "production"];
    app_v2.insert(
        "appEnvironments".into(),
        Value::Array(
            ws.environments
                .iter()
                .zip(env_names)
                .enumerate()
                .map(|(i, (id, name))| {
                    json!({"id": id, "organizationId": ws.id, "name": name, "isDefault": i == 2,
                           "priority": i + 1, "enabled": true,
                           "createdAt": app.created_at, "updatedAt": app.created_at})
                })
                .collect(),
        ),
    );
    json!({
        "app": [ { "definition": { "appV2": Value::Object(app_v2) } } ],
        "tooljet_version": tooljet_version
    })
}

/// Numeric `x.y.z` before the first `-` (ToolJet's `isVersionGreaterThan`).
pub(crate) fn version_greater(a: &str, b: &str) -> bool {
    fn parse(v: &str) -> [u64; 3] {
        let mut out = [0; 3];
        for (i, p) in v
            .split('-')
            .next()
            .unwrap_or("")
            .split('.')
            .take(3)
            .enumerate()
        {
            out[i] = p.trim_start_matches(['v', 'V']).parse().unwrap_or(0);
        }
        out
    }
    parse(a) > parse(b)
}

/// The environments of `ws`, priority order: development(1), staging(2), production(3,
/// default); only production for an old Community Edition (`single_environment`).
pub(crate) fn environments_of(ws: &WorkspaceRec, single_environment: bool) -> Vec<EnvironmentRec> {
    let names = ["development", "staging", "production"];
    ws.environments
        .iter()
        .zip(names)
        .enumerate()
        .filter(|(i, _)| !single_environment || *i == 2)
        .map(|(i, (id, name))| EnvironmentRec {
            id: id.clone(),
            name: name.to_string(),
            priority: i as u32 + 1,
            is_default: i == 2,
        })
        .collect()
}

/// Data sources every workspace has built in, which an import maps instead of creating
/// (`app-import-export.service.ts`, `DefaultDataSourceKinds`).
pub(crate) const STATIC_DATA_SOURCE_KINDS: &[&str] = &[
    "restapidefault",
    "runjsdefault",
    "runpydefault",
    "tooljetdbdefault",
    "workflowsdefault",
];

/// Adds a postgres data source `name` with options for every environment id in `env_ids` to
/// app content (or an `appV2`), its `password` encrypted as ToolJet exports it:
/// `{credential_id, encrypted:true}` and no value.
pub fn add_postgres_source(content: &mut Value, name: &str, env_ids: &[String]) -> String {
    let t = now();
    let id = new_id();
    let Some(map) = content.as_object_mut() else {
        return id;
    };
    let sources = map.entry("dataSources").or_insert_with(|| json!([]));
    if let Some(list) = sources.as_array_mut() {
        list.push(
            json!({"id": id, "name": name, "kind": "postgresql", "type": "default",
                         "scope": "global", "pluginId": null, "createdAt": t, "updatedAt": t}),
        );
    }
    let options = map.entry("dataSourceOptions").or_insert_with(|| json!([]));
    if let Some(list) = options.as_array_mut() {
        for env in env_ids {
            list.push(json!({
                "id": new_id(), "dataSourceId": id, "environmentId": env,
                "options": {
                    "connection_type": {"value": "manual", "encrypted": false},
                    "host": {"value": "db.example.invalid", "encrypted": false},
                    "port": {"value": 5432, "encrypted": false},
                    "database": {"value": "app", "encrypted": false},
                    "username": {"value": "app", "encrypted": false},
                    "password": {"credential_id": new_id(), "encrypted": true},
                    "ssl_enabled": {"value": false, "encrypted": false}
                },
                "createdAt": t, "updatedAt": t
            }));
        }
    }
    id
}

impl State {
    pub(crate) fn new(config: EmulatorConfig) -> State {
        let workspaces: Vec<WorkspaceRec> = config
            .workspaces
            .iter()
            .map(|(name, slug)| WorkspaceRec {
                id: new_id(),
                name: name.clone(),
                slug: slug.clone(),
                environments: [new_id(), new_id(), new_id()],
            })
            .collect();
        let mut constants = HashMap::new();
        for ws in &workspaces {
            let envs = environments_of(ws, config.single_environment);
            let all = |value: &str| -> BTreeMap<String, String> {
                envs.iter()
                    .map(|e| (e.id.clone(), value.to_string()))
                    .collect()
            };
            let t = now();
            constants.insert(
                ws.id.clone(),
                vec![
                    StoredConstant {
                        id: new_id(),
                        name: "API_BASE_URL".into(),
                        secret: false,
                        values: all("https://api.example.invalid"),
                        created_at: t.clone(),
                        updated_at: t.clone(),
                    },
                    StoredConstant {
                        id: new_id(),
                        name: "ORDERS_API_KEY".into(),
                        secret: true,
                        values: all("emulated-secret-value"),
                        created_at: t.clone(),
                        updated_at: t,
                    },
                ],
            );
        }
        let mut state = State {
            config,
            user_id: new_id(),
            instance_id: new_id(),
            workspaces,
            apps: Vec::new(),
            constants,
            data_sources: Vec::new(),
            data_source_writes: Vec::new(),
            sessions: HashMap::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            arrivals: Vec::new(),
        };
        if let Some(ws) = state.workspaces.first().cloned() {
            for i in 0..state.config.seed_apps {
                let name = format!("Sample App {}", i + 1);
                let content = sample_content(&name, &ws.environments[0]);
                let _ = state.create_app(&ws.id, &name, content, &["v1".to_string()]);
            }
        }
        state
    }

    pub(crate) fn workspace(&self, id: &str) -> Option<&WorkspaceRec> {
        self.workspaces
            .iter()
            .find(|w| w.id.eq_ignore_ascii_case(id))
    }

    /// ToolJet v2 resolution: id, then slug, then name.
    pub(crate) fn resolve_workspace(&self, ident: &str) -> Option<&WorkspaceRec> {
        self.workspace(ident)
            .or_else(|| self.workspaces.iter().find(|w| w.slug == ident))
            .or_else(|| self.workspaces.iter().find(|w| w.name == ident))
    }

    pub(crate) fn app(&self, id: &str) -> Option<&AppRec> {
        self.apps.iter().find(|a| a.id.eq_ignore_ascii_case(id))
    }

    pub(crate) fn app_mut(&mut self, id: &str) -> Option<&mut AppRec> {
        self.apps.iter_mut().find(|a| a.id.eq_ignore_ascii_case(id))
    }

    pub(crate) fn app_in(&self, ws: &str, id: &str) -> Option<&AppRec> {
        self.app(id).filter(|a| a.workspace_id == ws)
    }

    pub(crate) fn apps_in(&self, ws: &str) -> Vec<&AppRec> {
        self.apps.iter().filter(|a| a.workspace_id == ws).collect()
    }

    /// v2 app resolution: id or slug, then name.
    pub(crate) fn resolve_app(&self, ws: &str, ident: &str) -> Option<&AppRec> {
        let apps = self.apps_in(ws);
        apps.iter()
            .find(|a| a.id.eq_ignore_ascii_case(ident) || a.slug == ident)
            .or_else(|| apps.iter().find(|a| a.name == ident))
            .copied()
    }

    pub(crate) fn name_taken(&self, ws: &str, name: &str, except: Option<&str>) -> bool {
        self.apps
            .iter()
            .any(|a| a.workspace_id == ws && a.name == name && Some(a.id.as_str()) != except)
    }

    pub(crate) fn slug_taken(&self, ws: &str, slug: &str, except: Option<&str>) -> bool {
        self.apps
            .iter()
            .any(|a| a.workspace_id == ws && a.slug == slug && Some(a.id.as_str()) != except)
    }

    /// Creates an app; `Err` when the name is taken in the workspace.
    pub(crate) fn create_app(
        &mut self,
        ws: &str,
        name: &str,
        content: Value,
        version_names: &[String],
    ) -> Result<AppRec, String> {
        if self.workspace(ws).is_none() {
            return Err(format!("workspace {ws} does not exist"));
        }
        if self.name_taken(ws, name, None) {
            return Err(format!("App name {name:?} already exists"));
        }
        let id = new_id();
        let t = now();
        let mut versions = Vec::new();
        let mut seen = BTreeMap::new();
        for n in version_names {
            if seen.insert(n.clone(), ()).is_none() {
                versions.push(VersionRec {
                    id: new_id(),
                    name: n.clone(),
                    created_at: t.clone(),
                });
            }
        }
        if versions.is_empty() {
            versions.push(VersionRec {
                id: new_id(),
                name: "v1".into(),
                created_at: t.clone(),
            });
        }
        let app = AppRec {
            id: id.clone(),
            workspace_id: ws.to_string(),
            name: name.to_string(),
            // ToolJet defaults the slug to the app id.
            slug: id,
            versions,
            content,
            editable: true,
            created_at: t.clone(),
            updated_at: t,
        };
        self.apps.push(app.clone());
        Ok(app)
    }

    /// Imports the `definition` (`{appV2}`) of an export like ToolJet: fresh ids and
    /// timestamps, versions by name.
    pub(crate) fn import_definition(
        &mut self,
        ws: &str,
        definition: &Value,
        name: &str,
    ) -> Result<AppRec, String> {
        let app_v2 = definition.get("appV2").unwrap_or(definition);
        let versions = version_names_of(app_v2);
        let content = refresh_ids(&content_of(app_v2), &now());
        let app = self.create_app(ws, name, content, &versions)?;
        self.import_data_sources(ws, app_v2);
        Ok(app)
    }

    /// The environments of workspace `ws`.
    pub(crate) fn environments(&self, ws: &str) -> Vec<EnvironmentRec> {
        self.workspace(ws)
            .map(|w| environments_of(w, self.config.single_environment))
            .unwrap_or_default()
    }

    /// What an import does with the app's data sources (reference §3.2,
    /// `findOrCreateDataSourceForAppVersion`): static and sample ones map to the workspace's
    /// own; a global one of the same name and kind is reused with its options untouched;
    /// otherwise a global one is created with the exported non-encrypted options and an empty
    /// credential (`''`) for every encrypted one, per environment matched by name (envs the
    /// export lacks get the default env's options).
    pub(crate) fn import_data_sources(&mut self, ws: &str, app_v2: &Value) {
        let Some(sources) = app_v2.get("dataSources").and_then(Value::as_array) else {
            return;
        };
        let exported_envs: HashMap<String, String> = app_v2
            .get("appEnvironments")
            .and_then(Value::as_array)
            .map(|envs| {
                envs.iter()
                    .filter_map(|e| {
                        Some((
                            e.get("id")?.as_str()?.to_string(),
                            e.get("name")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let source_options: Vec<&Value> = app_v2
            .get("dataSourceOptions")
            .and_then(Value::as_array)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let targets = self.environments(ws);
        for ds in sources {
            let s = |k: &str| ds.get(k).and_then(Value::as_str).unwrap_or_default();
            let (id, name, kind, ds_type) = (s("id"), s("name"), s("kind"), s("type"));
            if name.is_empty()
                || kind.is_empty()
                || ds_type == "static"
                || ds_type == "sample"
                || STATIC_DATA_SOURCE_KINDS.contains(&kind)
                || STATIC_DATA_SOURCE_KINDS.contains(&name)
            {
                continue;
            }
            if self
                .data_sources
                .iter()
                .any(|d| d.workspace_id == ws && d.name == name && d.kind == kind)
            {
                continue;
            }
            let per_env: Vec<(Option<String>, &Value)> = source_options
                .iter()
                .filter(|o| o.get("dataSourceId").and_then(Value::as_str) == Some(id))
                .map(|o| {
                    let env = o
                        .get("environmentId")
                        .and_then(Value::as_str)
                        .and_then(|e| exported_envs.get(e).cloned());
                    (env, o.get("options").unwrap_or(&Value::Null))
                })
                .collect();
            let fallback = per_env
                .iter()
                .find(|(env, _)| env.as_deref() == Some("production"))
                .or_else(|| per_env.first())
                .map(|(_, o)| *o);
            let mut options = BTreeMap::new();
            for env in &targets {
                let exported = per_env
                    .iter()
                    .find(|(n, _)| n.as_deref() == Some(env.name.as_str()))
                    .map(|(_, o)| *o)
                    .or(fallback);
                options.insert(env.id.clone(), options_for_create(exported));
            }
            let t = now();
            self.data_sources.push(DataSourceRec {
                id: new_id(),
                workspace_id: ws.to_string(),
                name: name.to_string(),
                kind: kind.to_string(),
                ds_type: "default".into(),
                plugin_id: ds
                    .get("pluginId")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                options,
                created_at: t.clone(),
                updated_at: t,
            });
        }
    }

    pub(crate) fn apply_fault(&mut self, method: &str, path: &str) -> Option<FaultAction> {
        let idx = self.faults.iter().position(|f| f.matches(method, path))?;
        let fault = &mut self.faults[idx];
        if fault.skip > 0 {
            fault.skip -= 1;
            // A skipped fault lets this request through; later faults do not apply to it.
            return None;
        }
        let action = fault.action.clone();
        fault.times = fault.times.saturating_sub(1);
        if fault.times == 0 {
            self.faults.remove(idx);
        }
        Some(action)
    }
}

/// `parseOptionsForCreate(options, resetSecureData=true)`: non-encrypted values copied,
/// encrypted ones become a new, empty credential.
fn options_for_create(exported: Option<&Value>) -> Vec<(String, DataSourceOption)> {
    let Some(map) = exported.and_then(Value::as_object) else {
        return Vec::new();
    };
    map.iter()
        .filter(|(k, _)| k.as_str() != "tokenData")
        .map(|(k, o)| {
            let encrypted = o.get("encrypted").and_then(Value::as_bool).unwrap_or(false);
            let opt = if encrypted {
                DataSourceOption {
                    value: Some(json!("")),
                    encrypted: true,
                    credential_id: Some(new_id()),
                }
            } else {
                DataSourceOption {
                    value: o.get("value").cloned(),
                    encrypted: false,
                    credential_id: None,
                }
            };
            (k.clone(), opt)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(path_matches("/api/apps/*", "/api/apps/123"));
        assert!(!path_matches("/api/apps/*", "/api/apps/123/versions"));
        assert!(path_matches("/api/apps/**", "/api/apps/123/versions"));
        assert!(path_matches("/api/ext/**", "/api/ext/workspaces"));
        assert!(!path_matches("/api/apps", "/api/apps/1"));
        assert!(path_matches("/api/metadata", "/api/metadata"));
    }

    #[test]
    fn refresh_changes_ids_consistently() {
        let a = new_id();
        let v = json!({"id": a, "ref": format!("{{{{components.{a}.value}}}}"), "createdAt": "x", "n": 1});
        let r = refresh_ids(&v, "T");
        let new = r["id"].as_str().unwrap().to_string();
        assert_ne!(new, a);
        assert!(r["ref"].as_str().unwrap().contains(&new));
        assert_eq!(r["createdAt"], "T");
        assert_eq!(r["n"], 1);
    }

    #[test]
    fn versions() {
        assert!(version_greater("3.17.0", "3.16.9-ee"));
        assert!(!version_greater("3.16.0-cloud", "3.16.0"));
        assert!(version_greater("3.10.0", "3.9.0"));
    }
}
