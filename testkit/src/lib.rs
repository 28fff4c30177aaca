//! Real parts for tests.
pub mod emulator;
pub mod forge;
pub mod gitserver;
pub mod httpgit;
pub mod kube_env;
pub mod proc;
pub mod tls;
pub mod wait;
