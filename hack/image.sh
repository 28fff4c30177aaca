#!/usr/bin/env bash
# Builds the operator's OCI image without Docker, from the same content as the Dockerfile's final
# stage: Debian bookworm (minbase, like bookworm-slim: no docs, man pages or locales), git,
# openssh-client and ca-certificates without recommends, the `nonroot` user 65532 with home /tmp,
# /var/lib/tooljet-gitsync owned by it, the release binary at /usr/local/bin, and the same
# environment, user, working directory, entrypoint and command.
#
#   hack/image.sh [BINARY]     default BINARY: $CARGO_TARGET_DIR/release/tooljet-gitsync-operator
#
# Writes $CARGO_TARGET_DIR/image/tooljet-gitsync-operator-oci.tar (an oci-archive whose image is
# localhost/tooljet-gitsync-operator:dev; `ctr images import` or `skopeo copy` load it) and prints
# its size. The base layer (mmdebstrap, ~1 min) is cached under ~/.cache and rebuilt only when the
# package list or the user setup below changes; a new binary only redoes the top layer (seconds).
#
# `tests/image_script.rs` checks that these variables match the Dockerfile; change both together.
# Tools: mmdebstrap, umoci, skopeo (.ci/install-deps.sh). Needs root (mmdebstrap's root mode).
set -euo pipefail

PACKAGES=(git openssh-client ca-certificates)
IMAGE_UID=65532
IMAGE_USER=nonroot
IMAGE_HOME=/tmp
DATA_DIR=/var/lib/tooljet-gitsync
BIN_PATH=/usr/local/bin/tooljet-gitsync-operator
ENTRYPOINT=/usr/local/bin/tooljet-gitsync-operator
CMD=run
EXPOSE=8080
NAME=localhost/tooljet-gitsync-operator
TAG=dev

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tooljet-gitsync-operator"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${1:-$TARGET/release/tooljet-gitsync-operator}"
OUT="$TARGET/image"
ARCHIVE="$OUT/tooljet-gitsync-operator-oci.tar"

[ -x "$BIN" ] || { echo "image: no binary at $BIN (cargo build --release --locked --bin tooljet-gitsync-operator)" >&2; exit 1; }
for t in mmdebstrap umoci skopeo; do
  command -v "$t" >/dev/null || { echo "image: $t missing (bash .ci/install-deps.sh)" >&2; exit 1; }
done
started=$(date +%s)

# The Dockerfile's two RUN steps, as mmdebstrap hooks; their text keys the base-layer cache.
HOOKS=(
  "chroot \"\$1\" groupadd --system --gid $IMAGE_UID $IMAGE_USER"
  "chroot \"\$1\" useradd --system --uid $IMAGE_UID --gid $IMAGE_UID --home-dir $IMAGE_HOME --no-create-home --shell /usr/sbin/nologin $IMAGE_USER"
  "chroot \"\$1\" install -d -o $IMAGE_UID -g $IMAGE_UID -m 0750 $DATA_DIR"
  "rm -rf \"\$1\"/var/lib/apt/lists/* \"\$1\"/var/cache/apt/*"
)
# What debian:bookworm-slim leaves out (its /etc/dpkg/dpkg.cfg.d/docker).
DPKG_OPTS=(
  "path-exclude=/usr/share/doc/*" "path-include=/usr/share/doc/*/copyright"
  "path-exclude=/usr/share/man/*" "path-exclude=/usr/share/info/*"
  "path-exclude=/usr/share/locale/*" "path-include=/usr/share/locale/locale.alias"
  "path-exclude=/usr/share/lintian/*" "path-exclude=/usr/share/linda/*"
)
key=$(printf '%s\n' bookworm minbase "${PACKAGES[@]}" "${HOOKS[@]}" "${DPKG_OPTS[@]}" | sha256sum | cut -c1-16)
BASE_DIR="$CACHE/image-base"
ROOTFS="$BASE_DIR/rootfs-$key.tar"
mkdir -p "$BASE_DIR" "$OUT"
if [ ! -s "$ROOTFS" ]; then
  echo "image: building the bookworm base layer ($key)"
  args=(--variant=minbase --aptopt='APT::Install-Recommends "false"' --include="$(IFS=,; echo "${PACKAGES[*]}")")
  for o in "${DPKG_OPTS[@]}"; do args+=(--dpkgopt="$o"); done
  for h in "${HOOKS[@]}"; do args+=(--customize-hook="$h"); done
  mmdebstrap --quiet --format=tar "${args[@]}" bookworm "$ROOTFS.part" http://deb.debian.org/debian
  mv "$ROOTFS.part" "$ROOTFS"
  # Older base layers are of no further use.
  find "$BASE_DIR" -name 'rootfs-*.tar' ! -name "rootfs-$key.tar" -delete
fi

work=$(mktemp -d "$OUT/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout="$work/oci"
umoci init --layout "$layout"
umoci new --image "$layout:base"
umoci raw add-layer --image "$layout:base" --history.created_by "mmdebstrap bookworm minbase + ${PACKAGES[*]} + user $IMAGE_UID" "$ROOTFS"
mkdir -p "$work/bin"
install -m 0755 "$BIN" "$work/bin/tooljet-gitsync-operator"
umoci insert --image "$layout:base" --tag final --history.created_by "COPY tooljet-gitsync-operator $BIN_PATH" \
  "$work/bin/tooljet-gitsync-operator" "$BIN_PATH"
umoci config --image "$layout:final" \
  --config.user "$IMAGE_UID:$IMAGE_UID" --config.workingdir "$IMAGE_HOME" \
  --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" --config.env "HOME=$IMAGE_HOME" \
  --config.entrypoint "$ENTRYPOINT" --config.cmd "$CMD" --config.exposedports "$EXPOSE/tcp" \
  --config.label org.opencontainers.image.title=tooljet-gitsync-operator \
  --config.label "org.opencontainers.image.description=Kubernetes operator for ToolJet GitSync" \
  --config.label org.opencontainers.image.source=https://github.com/tooljet-gitsync/tooljet-gitsync-operator \
  --config.label org.opencontainers.image.licenses=Apache-2.0 \
  --config.label "org.opencontainers.image.version=$(sha256sum "$BIN" | cut -c1-12)"
umoci gc --layout "$layout"
rm -f "$ARCHIVE.part"
skopeo copy --quiet "oci:$layout:final" "oci-archive:$ARCHIVE.part:$NAME:$TAG"
mv "$ARCHIVE.part" "$ARCHIVE"
sha256sum "$BIN" | cut -d' ' -f1 > "$OUT/binary.sha256"
unpacked=$(( $(stat -c %s "$ROOTFS") + $(stat -c %s "$BIN") ))
echo "image: $NAME:$TAG -> $ARCHIVE: $(( $(stat -c %s "$ARCHIVE") / 1048576 )) MiB compressed, $(( unpacked / 1048576 )) MiB unpacked ($(( $(date +%s) - started )) s)"
