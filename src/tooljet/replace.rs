//! `replace_app`: bring an existing app to a new definition while keeping its name and slug.
//!
//! ToolJet has no call that replaces an app's definition in place, so the client swaps apps.
//! The names used on the way are pure functions of a random suffix ([`SwapNames`]).

use reqwest::Method;
use serde_json::Value;

use super::client::{app_not_found, Call, Client};
use super::error::RouteKind;
use super::wire;
use super::{AppSummary, Error, Resource, Workspace};

/// Temporary names and slugs of one swap. All fit ToolJet's 50-character name limit and are
/// recognisable (`__gitsync_`) should a failed rollback ever leave one behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapNames {
    /// Name the new definition is imported under.
    pub temp_name: String,
    /// Slug the new app is parked under if it cannot be deleted during a rollback.
    pub temp_slug: String,
    /// Name the old app is moved to while the new one takes its place.
    pub parked_name: String,
    /// Slug the old app is moved to (frees its slug for the new app).
    pub parked_slug: String,
}

impl SwapNames {
    /// The names of the swap with this suffix.
    pub fn new(suffix: &str) -> SwapNames {
        SwapNames {
            temp_name: format!("__gitsync_tmp_{suffix}"),
            temp_slug: format!("gitsync-tmp-{suffix}"),
            parked_name: format!("__gitsync_old_{suffix}"),
            parked_slug: format!("gitsync-old-{suffix}"),
        }
    }

    /// The names of a swap with a fresh random suffix.
    pub fn random() -> SwapNames {
        SwapNames::new(&format!("{:016x}", rand::random::<u64>()))
    }
}

/// Whether a failed import surely created nothing (ToolJet refused it up front).
pub(crate) fn import_refused(e: &Error) -> bool {
    matches!(
        e,
        Error::Rejected { .. }
            | Error::NameConflict { .. }
            | Error::VersionTooNew { .. }
            | Error::PayloadTooLarge { .. }
            | Error::InvalidExport { .. }
            | Error::InvalidName { .. }
            | Error::Unauthorized { .. }
            | Error::FeatureUnavailable { .. }
            | Error::NotFound { .. }
    )
}

impl Client {
    /// Replaces the definition of app `existing_app_id` with `export`, keeping the app's name
    /// and slug (its URL). The app id changes: ToolJet can only create apps from exports.
    ///
    /// The old app stays intact until the new one is in place:
    /// 1. checks, before changing anything: the export is valid, its `tooljet_version` is not
    ///    newer than the server, the app exists, and (token mode) the External API v2 rename
    ///    and delete routes exist;
    /// 2. import the export under a unique temporary name `__gitsync_tmp_<random>`;
    /// 3. park the old app: rename it to `__gitsync_old_<random>`, slug `gitsync-old-<random>`;
    /// 4. give the new app the old app's name and slug;
    /// 5. delete the old app.
    ///
    /// On a failure in 2 a possibly half-created temporary app is deleted. On a failure in 3–5
    /// the change is rolled back: the new app is deleted (or, if that fails, parked under its
    /// temporary name) and the old app gets its name and slug back; a failed delete in 5 is
    /// first checked (the delete may have happened despite the error). The original error is
    /// returned; if the rollback itself fails, [`Error::RollbackFailed`] names what is left.
    ///
    /// Routes: the import of [`Client::import_app`]; rename `PUT /api/apps/:id {app:{name,
    /// slug}}` (session) or `PATCH /api/v2/ext/workspaces/:ws/apps/:id {name, slug}` (token);
    /// delete `DELETE /api/apps/:id` or `DELETE /api/v2/ext/workspaces/:ws/apps/:id`.
    pub async fn replace_app(
        &self,
        ws: &Workspace,
        existing_app_id: &str,
        export: &Value,
    ) -> Result<AppSummary, Error> {
        let parts = wire::check_export(export).map_err(|detail| Error::InvalidExport { detail })?;
        let server = self.check_version(parts.tooljet_version).await?;
        let rows = self.list_app_rows(ws).await?;
        let old = rows
            .iter()
            .find(|a| a.id.eq_ignore_ascii_case(existing_app_id))
            .cloned()
            .ok_or_else(|| app_not_found(existing_app_id, &ws.name))?;
        if self.token_mode() {
            self.probe_ext_v2(ws, &old.id).await?;
        }
        let names = SwapNames::random();
        tracing::info!(app = %old.name, workspace = %ws.name, "replacing ToolJet app");

        // 2. import under a temporary name
        let new = match self
            .import_unchecked(ws, export, &names.temp_name, &server)
            .await
        {
            Ok(app) => app,
            Err(e) => {
                if !import_refused(&e) {
                    if let Err(cleanup) = self.delete_named(ws, &names.temp_name).await {
                        return Err(Error::RollbackFailed {
                            cause: e.to_string(),
                            rollback: cleanup.to_string(),
                            leftovers: format!(
                                "an app named {:?} may exist and can be deleted",
                                names.temp_name
                            ),
                        });
                    }
                }
                return Err(e);
            }
        };

        // 3. park the old app, 4. promote the new one
        let original_slug = old.slug.clone().unwrap_or_else(|| old.id.clone());
        if let Err(e) = self
            .rename_app(ws, &old.id, &names.parked_name, &names.parked_slug)
            .await
        {
            return Err(self.roll_back(ws, &names, &old, &new.id, e).await);
        }
        if let Err(e) = self
            .rename_app(ws, &new.id, &old.name, &original_slug)
            .await
        {
            return Err(self.roll_back(ws, &names, &old, &new.id, e).await);
        }

        // 5. delete the old app
        if let Err(e) = self.delete_app(ws, &old.id).await {
            match self.list_app_rows(ws).await {
                Ok(rows) if !rows.iter().any(|a| a.id.eq_ignore_ascii_case(&old.id)) => {
                    tracing::debug!("old app is gone despite the delete error");
                }
                Ok(_) => return Err(self.roll_back(ws, &names, &old, &new.id, e).await),
                Err(check) => {
                    return Err(Error::RollbackFailed {
                        cause: e.to_string(),
                        rollback: format!("checking the old app failed: {check}"),
                        leftovers: format!(
                            "the new app {} now carries the name {:?}; the old app {} may remain as {:?} and can be deleted",
                            new.id, old.name, old.id, names.parked_name
                        ),
                    })
                }
            }
        }
        tracing::info!(app = %old.name, old_id = %old.id, new_id = %new.id, "replaced ToolJet app");
        match self.app_by_id(ws, &new.id).await {
            Ok(app) => Ok(app),
            Err(e) => {
                tracing::debug!(reason = %e.reason(), "re-reading the replaced app failed");
                Ok(AppSummary {
                    id: new.id,
                    name: old.name,
                    slug: Some(original_slug),
                    versions: new.versions,
                })
            }
        }
    }

    /// The checks of an import or replace made before anything changes: the export can be
    /// imported here (valid, not from a newer ToolJet) and apps can be renamed and deleted.
    /// Returns whether they can (session login: always; token: with the External API v2).
    /// Replacing needs it; a first import without it goes in under its final name.
    pub(crate) async fn check_swap(
        &self,
        ws: &Workspace,
        export: &Value,
        existing_app_id: Option<&str>,
    ) -> Result<bool, Error> {
        let parts = wire::check_export(export).map_err(|detail| Error::InvalidExport { detail })?;
        self.check_version(parts.tooljet_version).await?;
        if !self.token_mode() {
            return Ok(true);
        }
        match existing_app_id {
            Some(id) => self.probe_ext_v2(ws, id).await.map(|_| true),
            None => {
                let call = Call::new(
                    Method::GET,
                    RouteKind::ExtV2,
                    &["v2", "ext", "workspaces", &ws.id],
                )
                .about(Resource::Workspace, &ws.name);
                match self.send(&call).await {
                    Ok(_) => Ok(true),
                    Err(Error::NotFound { .. }) | Err(Error::FeatureUnavailable { .. }) => {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Token mode: ToolJet's External API v1 cannot rename or delete apps; v2 can. A GET of the
    /// existing app tells whether v2 is there before anything is changed.
    async fn probe_ext_v2(&self, ws: &Workspace, app_id: &str) -> Result<(), Error> {
        let call = Call::new(
            Method::GET,
            RouteKind::ExtV2,
            &["v2", "ext", "workspaces", &ws.id, "apps", app_id],
        )
        .about(Resource::App, app_id);
        match self.send(&call).await {
            Ok(_) => Ok(()),
            Err(Error::NotFound { .. }) | Err(Error::FeatureUnavailable { .. }) => {
                Err(Error::FeatureUnavailable {
                    feature: "Replacing an existing app with token credentials".into(),
                    hint: "it needs ToolJet's External API v2 (PATCH and DELETE /api/v2/ext/workspaces/:ws/apps/:app, Enterprise releases since late 2025); upgrade ToolJet or use `email` and `password` credentials".into(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes the app named `name`, if there is one.
    async fn delete_named(&self, ws: &Workspace, name: &str) -> Result<(), Error> {
        let rows = self.list_app_rows(ws).await?;
        for app in rows.iter().filter(|a| a.name == name) {
            self.delete_app(ws, &app.id).await?;
        }
        Ok(())
    }

    /// Undoes steps 3–5: removes the new app and gives the old one back its name and slug.
    async fn roll_back(
        &self,
        ws: &Workspace,
        names: &SwapNames,
        old: &AppSummary,
        new_id: &str,
        cause: Error,
    ) -> Error {
        tracing::warn!(reason = %cause.reason(), app = %old.name, "replacing the app failed, rolling back");
        let original_slug = old.slug.clone().unwrap_or_else(|| old.id.clone());
        let mut failures = Vec::new();
        let mut leftovers = Vec::new();
        // The new app must let go of the name and slug first.
        let new_out_of_the_way = match self.delete_app(ws, new_id).await {
            Ok(()) => true,
            Err(e) => {
                failures.push(format!("deleting the new app {new_id}: {e}"));
                match self
                    .rename_app(ws, new_id, &names.temp_name, &names.temp_slug)
                    .await
                {
                    Ok(()) => {
                        leftovers.push(format!(
                            "the new app {new_id} remains as {:?} and can be deleted",
                            names.temp_name
                        ));
                        true
                    }
                    Err(e) => {
                        failures.push(format!("parking the new app {new_id}: {e}"));
                        leftovers.push(format!(
                            "the new app {new_id} may carry the name {:?}",
                            old.name
                        ));
                        false
                    }
                }
            }
        };
        if new_out_of_the_way {
            let current = self.list_app_rows(ws).await.ok().and_then(|rows| {
                rows.into_iter()
                    .find(|a| a.id.eq_ignore_ascii_case(&old.id))
            });
            let intact = current.as_ref().is_some_and(|c| {
                c.name == old.name && c.slug.as_deref().unwrap_or(&c.id) == original_slug
            });
            if !intact {
                if let Err(e) = self
                    .rename_app(ws, &old.id, &old.name, &original_slug)
                    .await
                {
                    failures.push(format!("restoring the old app's name: {e}"));
                }
            }
        }
        if failures.is_empty() {
            tracing::info!(app = %old.name, "rolled back; the old app is unchanged");
            return cause;
        }
        let old_restored =
            new_out_of_the_way && !failures.iter().any(|f| f.starts_with("restoring"));
        if !old_restored {
            leftovers.push(format!(
                "the old app {} may remain as {:?}; rename it back to {:?}",
                old.id, names.parked_name, old.name
            ));
        }
        Error::RollbackFailed {
            cause: cause.to_string(),
            rollback: failures.join("; "),
            leftovers: leftovers.join("; "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_names_fit_tooljet_limits() {
        let n = SwapNames::random();
        assert!(n.temp_name.len() <= super::super::client::MAX_APP_NAME);
        assert!(n.parked_name.len() <= super::super::client::MAX_APP_NAME);
        assert_ne!(n.temp_name, n.parked_name);
        assert!(n
            .parked_slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert_ne!(SwapNames::random(), SwapNames::random());
        assert_eq!(SwapNames::new("ab").temp_name, "__gitsync_tmp_ab");
    }

    #[test]
    fn refused_imports_need_no_cleanup() {
        assert!(import_refused(&Error::VersionTooNew {
            export: "2".into(),
            server: "1".into()
        }));
        assert!(!import_refused(&Error::Timeout {
            route: "x".into(),
            after: std::time::Duration::from_secs(1)
        }));
        assert!(!import_refused(&Error::Server {
            status: 500,
            route: "x".into(),
            detail: String::new()
        }));
    }
}
