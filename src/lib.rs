//! tooljet-gitsync-operator: ToolJet GitSync, declared in Kubernetes custom resources.
//!
//! A sans-IO core (`api`, `layout`, `keys`, pure parts of `git` and `controller`) with thin
//! edges (kube client, git subprocesses, the ToolJet HTTP client).

pub mod api;
pub mod controller;
pub mod forge;
pub mod git;
pub mod keys;
pub mod layout;
pub mod leader;
pub mod metrics;
pub mod tls;
pub mod tooljet;
pub mod webhook;
