//! AppSync Pull: import an app from git into the target ToolJet workspace.

use super::{Context, Error, Problem};
use crate::api::{AppSync, AppSyncStatus, GitSyncConfig};

/// Imports or updates the app from git.
pub async fn pull(
    _aps: &AppSync,
    _ctx: &Context,
    _gsc: &GitSyncConfig,
    _prev: &AppSyncStatus,
) -> Result<Result<super::appsync::Outcome, Problem>, Error> {
    Ok(Err(Problem::stalled(
        "PullNotImplemented",
        "direction Pull is not available in this build of the operator yet; use Push, or upgrade the operator",
    )))
}
