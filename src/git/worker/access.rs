//! The connection check ("Finalize setup") as a worker request: run by the repository's
//! worker in turn with its fetches and pushes, so all git traffic for one repository is
//! serialised (design §3.4), and its read of the branch head feeds the remote-head cache.

use super::{bump, transport_key, Worker};
use crate::git::check::{check_access, CheckOutcome};
use crate::git::cli::Transport;

impl Worker {
    /// [`check_access`] of `branch` with `transport`. The check makes one `ls-remote` (counted
    /// like any other); on success the head it read is cached as that transport's remote head
    /// of `branch`.
    pub(super) async fn check(&mut self, transport: &Transport, branch: &str) -> CheckOutcome {
        bump(&self.stats.ls_remotes, 1);
        let outcome = check_access(&self.cli, &self.url, branch, transport).await;
        if let Ok(access) = &outcome.result {
            self.heads
                .record(transport_key(transport), branch, access.head.clone());
        }
        outcome
    }
}
