#!/usr/bin/env bash
# The test command (README "Test"; .ci/run calls it too). On a fresh machine it installs what
# the tests need, then runs the whole suite:
#   1. .ci/install-deps.sh: packages, Kubernetes 1.20.2 built from Debian's source package and
#      cached under ~/.cache/tooljet-gitsync-operator/, helm, kubernetes-validate;
#   2. the release binary and its image (hack/image.sh), which tests/cluster runs in a pod;
#   3. cargo test --workspace --locked, with any arguments given here passed on.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash .ci/install-deps.sh
cargo build --release --locked --bin tooljet-gitsync-operator
bash hack/image.sh
cargo test --workspace --locked "$@"
