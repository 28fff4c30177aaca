//! GitLab merge requests API emulator.
