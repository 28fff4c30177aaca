//! Real parts for tests.
pub mod emulator;
pub mod gitserver;
pub mod kube_env;
pub mod proc;
pub mod wait;
