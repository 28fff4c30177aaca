//! Git: repository URLs, SSH transport settings, the `git` subprocess edge, failure
//! classification and the connection check ("Finalize setup").
//!
//! gix has no push and hides ssh's stderr, so anything whose failure a user must understand
//! (ls-remote, push) runs the `git` CLI with a per-call `GIT_SSH_COMMAND` (see
//! test-infra-findings §3) and its stderr is classified into condition reasons.

pub mod check;
pub mod classify;
pub mod cli;
mod mirror;
pub mod sign;
pub mod url;
pub mod worker;

pub use check::{check_access, AccessCheck, CheckOutcome};
pub use classify::{GitFailure, GitFailureKind};
pub use cli::{GitCli, HostKeyPolicy, HttpsAuth, Transport};
pub use sign::{CommitSigner, SignError};
pub use url::{RepoUrl, UrlError};
