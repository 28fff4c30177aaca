//! The GitSyncConfig's ToolJet check: credentials, server version, workspace.

use kube::ResourceExt;

use super::{Context, Error, Problem};
use crate::api::{GitSyncConfig, ToolJetStatus};

/// Placeholder until the ToolJet client lands.
pub async fn check(
    _gsc: &GitSyncConfig,
    _ctx: &Context,
) -> Result<Result<ToolJetStatus, Problem>, Error> {
    let _ = _gsc.name_any();
    Ok(Ok(ToolJetStatus::default()))
}
