//! An emulator of the ToolJet HTTP API the operator uses, on a loopback port.
//!
//! It follows `tooljet-reference.md`: External API (`/api/ext`, `Authorization: Basic
//! <token>`, 403 on a wrong token, 404 in Community mode, 451 without licence), session login
//! (`POST /api/authenticate`, cookie `tj_auth_token`, header `tj-workspace-id`), the internal
//! export/import routes, unique app names per workspace, refusal of exports from a newer ToolJet,
//! ToolJet's export JSON shape with ids and timestamps that change on every import, and the
//! 50 MB body limit. Environments, workspace constants and global data sources follow
//! `tooljet-constants-datasources.md` (routes in `routes/constants.rs` and
//! `routes/datasources.rs`). Tests inspect and change its state directly and inject faults.

mod model;
mod routes;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use model::{
    add_postgres_source, sample_content, AppRec, ConstantRec, DataSourceOption, DataSourceRec,
    DataSourceWrite, EnvironmentRec, Fault, FaultAction, RequestRecord, VersionRec, WorkspaceRec,
};

use model::{export_json, new_id, now, State, StoredConstant, VersionSelection};
use routes::{lock, Shared};

/// How the emulated ToolJet is set up.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Listen address; must be on 127.0.0.1 (port 0 = any free port) unless
    /// `private_namespace_address` is set.
    pub listen: SocketAddr,
    /// `listen` is an address of a network namespace the test made for itself (the cluster
    /// test's node IP, so pods reach the emulator), never one of the machine's own.
    pub private_namespace_address: bool,
    /// `EXTERNAL_API_ACCESS_TOKEN`; `None` = External API enabled without a token (all 403).
    pub token: Option<String>,
    /// Login email of the single user (member and admin of every workspace).
    pub email: Option<String>,
    /// Login password.
    pub password: Option<String>,
    /// Community Edition: `/api/ext`, `/api/v2/ext` and GitSync routes answer 404, and
    /// writes of constants and data-source options fan out to every environment (no
    /// multi-environment licence).
    pub community: bool,
    /// An old Community Edition workspace with a single `production` environment (2.x CE);
    /// off = development/staging/production, as current ToolJet seeds for every workspace.
    pub single_environment: bool,
    /// Offer the External API v2 (`/api/v2/ext`, late-2025 EE). Off = a 3.16 LTS EE.
    pub ext_v2: bool,
    /// Offer GitSync's `PUT /api/app-git/:appId/configs`.
    pub gitsync: bool,
    /// Whether the licence includes `EXTERNAL_API` (false = 451).
    pub external_api_licensed: bool,
    /// Server version (`installed_version`, export `tooljet_version`).
    pub version: String,
    /// Number of sample apps created in the first workspace.
    pub seed_apps: usize,
    /// Workspaces as (name, slug).
    pub workspaces: Vec<(String, String)>,
    /// Request body limit (`MAX_JSON_SIZE`), 50 MiB by default.
    pub max_body_bytes: usize,
    /// Apps per page of `GET /api/apps` (ToolJet: 9).
    pub page_size: usize,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            private_namespace_address: false,
            token: Some(format!("tj-ext-{}", new_id())),
            email: Some("admin@example.com".into()),
            password: Some(format!("pw-{}", new_id())),
            community: false,
            single_environment: false,
            ext_v2: true,
            gitsync: true,
            external_api_licensed: true,
            version: "3.16.0".into(),
            seed_apps: 0,
            workspaces: vec![
                ("My workspace".into(), "my-workspace".into()),
                ("Staging".into(), "staging".into()),
            ],
            max_body_bytes: 50 * 1024 * 1024,
            page_size: 9,
        }
    }
}

/// A running emulator; stops when dropped.
pub struct Emulator {
    addr: SocketAddr,
    state: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Emulator {
    /// Starts the emulator on `config.listen` (127.0.0.1 only).
    pub async fn start(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        if config.listen.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST)
            && !config.private_namespace_address
        {
            bail!(
                "the ToolJet emulator only listens on 127.0.0.1, not {}",
                config.listen
            );
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let max_body = config.max_body_bytes;
        let state: Shared = Arc::new(Mutex::new(State::new(config)));
        let app = routes::router(state.clone(), max_body);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Emulator {
            addr,
            state,
            shutdown: Some(tx),
            task,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// External API token.
    pub fn token(&self) -> Option<String> {
        lock(&self.state).config.token.clone()
    }

    /// Login email.
    pub fn email(&self) -> Option<String> {
        lock(&self.state).config.email.clone()
    }

    /// Login password.
    pub fn password(&self) -> Option<String> {
        lock(&self.state).config.password.clone()
    }

    /// All workspaces, the default one first.
    pub fn workspaces(&self) -> Vec<WorkspaceRec> {
        lock(&self.state).workspaces.clone()
    }

    /// The default (first) workspace.
    pub fn workspace(&self) -> WorkspaceRec {
        self.workspaces()
            .into_iter()
            .next()
            .unwrap_or_else(|| WorkspaceRec {
                id: String::new(),
                name: String::new(),
                slug: String::new(),
                environments: Default::default(),
            })
    }

    /// Creates an app in the default workspace. `definition` may be a full export, an `appV2`
    /// object or bare content; `None` creates a sample app (with constants/secrets references).
    pub fn create_app(&self, name: &str, definition: Option<Value>) -> Result<AppRec, String> {
        let ws = self.workspace().id;
        self.create_app_in(&ws, name, definition)
    }

    /// Creates an app in workspace `ws` (id).
    pub fn create_app_in(
        &self,
        ws: &str,
        name: &str,
        definition: Option<Value>,
    ) -> Result<AppRec, String> {
        let mut st = lock(&self.state);
        let env = st
            .workspace(ws)
            .map(|w| w.environments[0].clone())
            .unwrap_or_default();
        let (content, versions) = match definition {
            Some(d) => {
                let app_v2 = model::content_source(&d);
                (model::content_of(&d), model::version_names_of(&app_v2))
            }
            None => (sample_content(name, &env), vec!["v1".to_string()]),
        };
        st.create_app(ws, name, content, &versions)
    }

    /// Edits an app's content (what the editor would change: components, queries, ...) and
    /// bumps its `updated_at`, as saving in ToolJet does.
    pub fn edit_app(&self, app_id: &str, edit: impl FnOnce(&mut Value)) -> Result<(), String> {
        let mut st = lock(&self.state);
        let app = st
            .app_mut(app_id)
            .ok_or_else(|| format!("no app {app_id}"))?;
        edit(&mut app.content);
        app.updated_at = now();
        Ok(())
    }

    /// Adds a version (becoming the editing/latest version) to an app.
    pub fn add_version(&self, app_id: &str, name: &str) -> Result<VersionRec, String> {
        let mut st = lock(&self.state);
        let app = st
            .app_mut(app_id)
            .ok_or_else(|| format!("no app {app_id}"))?;
        if app.versions.iter().any(|v| v.name == name) {
            return Err(format!("version {name} exists"));
        }
        let v = VersionRec {
            id: new_id(),
            name: name.to_string(),
            created_at: now(),
        };
        app.versions.push(v.clone());
        Ok(v)
    }

    /// Renames an app (no uniqueness check: tests may create conflicts on purpose).
    pub fn rename_app(&self, app_id: &str, name: &str) -> bool {
        match lock(&self.state).app_mut(app_id) {
            Some(a) => {
                a.name = name.to_string();
                true
            }
            None => false,
        }
    }

    /// Deletes an app.
    pub fn delete_app(&self, app_id: &str) -> bool {
        let mut st = lock(&self.state);
        let before = st.apps.len();
        st.apps.retain(|a| !a.id.eq_ignore_ascii_case(app_id));
        st.apps.len() != before
    }

    /// One app by id.
    pub fn app(&self, app_id: &str) -> Option<AppRec> {
        lock(&self.state).app(app_id).cloned()
    }

    /// All apps of all workspaces.
    pub fn apps(&self) -> Vec<AppRec> {
        lock(&self.state).apps.clone()
    }

    /// Apps of one workspace.
    pub fn apps_in(&self, ws: &str) -> Vec<AppRec> {
        lock(&self.state).apps_in(ws).into_iter().cloned().collect()
    }

    /// The export ToolJet would produce for this app (latest version).
    pub fn export_of(&self, app_id: &str) -> Option<Value> {
        let st = lock(&self.state);
        let app = st.app(app_id)?;
        let ws = st.workspace(&app.workspace_id)?;
        Some(export_json(
            app,
            ws,
            &st.user_id,
            VersionSelection::Latest,
            &st.config.version,
        ))
    }

    /// Workspace constants of `ws` with their REAL (unmasked) values.
    pub fn constants(&self, ws: &str) -> Vec<ConstantRec> {
        let st = lock(&self.state);
        let envs = st.environments(ws);
        let default = envs.iter().find(|e| e.is_default).map(|e| e.id.clone());
        st.constants
            .get(ws)
            .map(|cs| {
                cs.iter()
                    .map(|c| ConstantRec {
                        id: c.id.clone(),
                        name: c.name.clone(),
                        secret: c.secret,
                        value: default
                            .as_ref()
                            .and_then(|d| c.values.get(d))
                            .cloned()
                            .unwrap_or_default(),
                        values: envs
                            .iter()
                            .map(|e| {
                                (
                                    e.name.clone(),
                                    c.values.get(&e.id).cloned().unwrap_or_default(),
                                )
                            })
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The REAL value of constant `name` (Secret if `secret`) in the environment named
    /// `env` (`development`, `staging`, `production`); `None` if there is no such constant.
    pub fn constant_value(&self, ws: &str, name: &str, secret: bool, env: &str) -> Option<String> {
        self.constants(ws)
            .into_iter()
            .find(|c| c.name == name && c.secret == secret)
            .and_then(|c| c.values.get(env).cloned())
    }

    /// Adds or replaces (same name and type) a workspace constant, `value` in every
    /// environment.
    pub fn set_constant(&self, ws: &str, name: &str, secret: bool, value: &str) {
        let mut st = lock(&self.state);
        let values = st
            .environments(ws)
            .into_iter()
            .map(|e| (e.id, value.to_string()))
            .collect();
        let t = now();
        let list = st.constants.entry(ws.to_string()).or_default();
        list.retain(|c| !(c.name == name && c.secret == secret));
        list.push(StoredConstant {
            id: new_id(),
            name: name.to_string(),
            secret,
            values,
            created_at: t.clone(),
            updated_at: t,
        });
    }

    /// Removes every constant of `ws`.
    pub fn clear_constants(&self, ws: &str) {
        lock(&self.state).constants.remove(ws);
    }

    /// The environments of `ws`, priority order.
    pub fn environments(&self, ws: &str) -> Vec<EnvironmentRec> {
        lock(&self.state).environments(ws)
    }

    /// The id of the environment named `name` in `ws`.
    pub fn environment_id(&self, ws: &str, name: &str) -> Option<String> {
        self.environments(ws)
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.id)
    }

    /// Global data sources of `ws`, with their REAL option values (secrets included).
    pub fn data_sources(&self, ws: &str) -> Vec<DataSourceRec> {
        lock(&self.state)
            .data_sources
            .iter()
            .filter(|d| d.workspace_id == ws)
            .cloned()
            .collect()
    }

    /// The data source named `name` in `ws`.
    pub fn data_source(&self, ws: &str, name: &str) -> Option<DataSourceRec> {
        self.data_sources(ws).into_iter().find(|d| d.name == name)
    }

    /// Creates a global data source in `ws` with the same `options` (key, value, encrypted)
    /// in every environment; encrypted values are stored as credentials. Returns its id.
    pub fn create_data_source(
        &self,
        ws: &str,
        name: &str,
        kind: &str,
        options: &[(&str, Value, bool)],
    ) -> String {
        let mut st = lock(&self.state);
        let envs = st.environments(ws);
        let id = new_id();
        let t = now();
        let per_env = |_: &EnvironmentRec| -> Vec<(String, DataSourceOption)> {
            options
                .iter()
                .map(|(k, v, enc)| {
                    (
                        k.to_string(),
                        DataSourceOption {
                            value: Some(v.clone()),
                            encrypted: *enc,
                            credential_id: enc.then(new_id),
                        },
                    )
                })
                .collect()
        };
        let options = envs.iter().map(|e| (e.id.clone(), per_env(e))).collect();
        st.data_sources.push(DataSourceRec {
            id: id.clone(),
            workspace_id: ws.to_string(),
            name: name.to_string(),
            kind: kind.to_string(),
            ds_type: "default".into(),
            plugin_id: None,
            options,
            created_at: t.clone(),
            updated_at: t,
        });
        id
    }

    /// The REAL stored value of option `key` of data source `ds_id` in the environment named
    /// `env`; `None` when the option or its value is absent.
    pub fn data_source_value(&self, ds_id: &str, env: &str, key: &str) -> Option<Value> {
        let st = lock(&self.state);
        let ds = st.data_sources.iter().find(|d| d.id == ds_id)?;
        let env_id = st
            .environments(&ds.workspace_id)
            .into_iter()
            .find(|e| e.name == env)?
            .id;
        ds.option(&env_id, key)?.value.clone()
    }

    /// Stores an OAuth `tokenData` option on data source `ds_id` in the environment named
    /// `env` (what ToolJet keeps after an OAuth consent), replacing any before.
    pub fn set_token_data(&self, ds_id: &str, env: &str, value: Value) -> bool {
        let mut st = lock(&self.state);
        let Some(ws) = st
            .data_sources
            .iter()
            .find(|d| d.id == ds_id)
            .map(|d| d.workspace_id.clone())
        else {
            return false;
        };
        let Some(env_id) = st
            .environments(&ws)
            .into_iter()
            .find(|e| e.name == env)
            .map(|e| e.id)
        else {
            return false;
        };
        let Some(ds) = st.data_sources.iter_mut().find(|d| d.id == ds_id) else {
            return false;
        };
        let opts = ds.options.entry(env_id).or_default();
        opts.retain(|(k, _)| k != "tokenData");
        opts.push((
            "tokenData".into(),
            DataSourceOption {
                value: Some(value),
                encrypted: false,
                credential_id: None,
            },
        ));
        true
    }

    /// Every `PUT /api/data-sources/:id` applied so far.
    pub fn data_source_writes(&self) -> Vec<DataSourceWrite> {
        lock(&self.state).data_source_writes.clone()
    }

    /// Injects a fault (see [`Fault`]).
    pub fn inject(&self, fault: Fault) {
        lock(&self.state).faults.push(fault);
    }

    /// Removes all pending faults.
    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// Requests handled so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.state).requests.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        let mut st = lock(&self.state);
        st.requests.clear();
        st.arrivals.clear();
    }

    /// Requests as they arrived (status 0), answered or not: a test can act while one is
    /// still being handled (e.g. kill the client inside a slow write).
    pub fn arrivals(&self) -> Vec<RequestRecord> {
        lock(&self.state).arrivals.clone()
    }

    /// Invalidates every session (as if they expired); the next internal call gets 401.
    pub fn expire_sessions(&self) {
        lock(&self.state).sessions.clear();
    }

    /// Changes the server version.
    pub fn set_version(&self, version: &str) {
        lock(&self.state).config.version = version.to_string();
    }

    /// Switches Community mode (External API and GitSync routes 404, constant and
    /// data-source writes to every environment).
    pub fn set_community(&self, on: bool) {
        lock(&self.state).config.community = on;
    }

    /// Switches the External API v2.
    pub fn set_ext_v2(&self, on: bool) {
        lock(&self.state).config.ext_v2 = on;
    }

    /// Switches whether the licence includes the External API (off = 451).
    pub fn set_external_api_licensed(&self, on: bool) {
        lock(&self.state).config.external_api_licensed = on;
    }

    /// Switches GitSync's app-config route.
    pub fn set_gitsync(&self, on: bool) {
        lock(&self.state).config.gitsync = on;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}
