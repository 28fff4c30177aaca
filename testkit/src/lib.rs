//! Real parts for tests.
//!
//! - [`kube_env`]: etcd + kube-apiserver; [`gitserver`]: sshd + git-shell;
//! - [`httpgit`]: the real `git http-backend` over TLS with basic auth (users, PATs, GitHub App
//!   installation tokens), sharing its [`httpgit::Credentials`] with
//! - [`forge`]: GitHub (App tokens, pulls), GitLab (merge requests) and Gitea (pulls) API
//!   emulators backed by its repositories;
//! - [`tls`]: the throw-away CA and TLS terminator they use; [`emulator`]: the ToolJet API.
pub mod emulator;
pub mod forge;
pub mod gitserver;
pub mod httpgit;
pub mod kube_env;
pub mod proc;
pub mod tls;
pub mod wait;
