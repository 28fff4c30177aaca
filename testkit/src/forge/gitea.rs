//! Gitea pulls API emulator.
