#!/usr/bin/env bash
# A real single-node Kubernetes 1.20.2 (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd + runc + CNI bridge, kubelet, kube-proxy), for tests/cluster.
#
#   hack/node.sh up DIR [IMAGE_TAR]   start it with DIR as its state, import the operator image
#                                     (hack/image.sh's OCI archive, localhost/tooljet-gitsync-operator:dev)
#
# Runs ONLY inside private mount, network and pid namespaces that its caller made (tests/cluster
# re-executes itself under `unshare --mount --net --pid --fork --mount-proc --propagation
# private`), and refuses to run otherwise: every mount below (tmpfs over /run, /var/lib,
# /var/log; fake files over the /proc/sys entries kubelet insists on writing), the node's veth,
# its iptables rules and the ports all live and die with those namespaces. The machine's own
# sysctls, mounts and iptables are never touched. The daemons are left running in the
# background; the caller (pid 1 of the namespace) stops them, and the kernel kills whatever is
# left when it exits. The one thing outside the namespaces is kubelet's cgroup subtree
# (/sys/fs/cgroup/*/$CGROUP_ROOT, named after DIR), which the caller removes.
#
# Binaries: .ci/install-deps.sh builds them from Debian's kubernetes source package into
# ~/.cache/tooljet-gitsync-operator/.
set -euo pipefail

NODE_IP=192.168.253.1
NODE=node0
POD_CIDR=10.89.0.0/24
SERVICE_CIDR=10.96.0.0/24
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tooljet-gitsync-operator"
K8S="$CACHE/k8s-1.20.2"
APISERVER="${KUBE_APISERVER:-$CACHE/kube-apiserver-1.20.2}"
ADMIN_TOKEN=cluster-admin-token

die() { echo "node.sh: $*" >&2; exit 1; }

inside_private_namespaces() {
  [ -n "${TJGS_HOST_NETNS:-}" ] && [ -n "${TJGS_HOST_MNTNS:-}" ] || return 1
  [ "$(readlink /proc/self/ns/net)" != "$TJGS_HOST_NETNS" ] || return 1
  [ "$(readlink /proc/self/ns/mnt)" != "$TJGS_HOST_MNTNS" ] || return 1
  # pid 1 of this pid namespace is the test harness, not the machine's init.
  [ "$(cat /proc/1/comm)" != systemd ] && [ "$(cat /proc/1/comm)" != init ] || return 1
}

up() {
  local D=$1; shift
  [ -d "$D" ] || die "no state directory $D"
  inside_private_namespaces || die "refusing to run outside the private namespaces tests/cluster makes"
  for b in kubelet kube-proxy kube-controller-manager kube-scheduler kubectl; do
    [ -x "$K8S/$b" ] || die "$K8S/$b missing: run bash .ci/install-deps.sh"
  done
  [ -x "$APISERVER" ] || die "$APISERVER missing: run bash .ci/install-deps.sh"
  local started; started=$(date +%s%N)
  mkdir -p "$D"/{certs,manifests,etcd,containerd,cni/net.d,cni/ipam,fakesys,logs,kubelet-plugins}
  local L=$D/logs

  # Private mounts: kubelet and the CNI plugins hard-code these paths.
  mount -t tmpfs tmpfs /run
  mount -t tmpfs tmpfs /var/lib
  mount -t tmpfs tmpfs /var/log
  mkdir -p /run/sshd /run/containerd /run/netns /var/lib/kubelet /var/lib/cni
  # kubelet forces vm.overcommit_memory=1, kernel.panic=10, ...: those sysctls are not
  # namespaced, so private copies stand in for them.
  local f n
  for f in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
    n=$D/fakesys/${f//\//_}; cat "/proc/sys/$f" > "$n"; mount --bind "$n" "/proc/sys/$f"
  done

  # The node's address: a veth pair (this kernel has no dummy links) with a default route that
  # leads nowhere (kubelet wants one). Pods reach the node, and what listens on NODE_IP, via
  # the CNI bridge.
  ip link set lo up
  ip link add node0 type veth peer name node0p
  ip link set node0p up
  ip addr add "$NODE_IP/24" dev node0
  ip link set node0 up
  ip route add default via 192.168.253.254 dev node0

  openssl genrsa -out "$D/sa.key" 2048 2>/dev/null
  openssl rsa -in "$D/sa.key" -pubout -out "$D/sa.pub" 2>/dev/null
  echo "$ADMIN_TOKEN,admin,admin-uid,system:masters" > "$D/tokens.csv"
  cat > "$D/kubeconfig" <<X
apiVersion: v1
kind: Config
clusters: [{name: node, cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$D/certs/apiserver.crt"}}]
users: [{name: admin, user: {token: $ADMIN_TOKEN}}]
contexts: [{name: node, context: {cluster: node, user: admin, namespace: default}}]
current-context: node
X

  etcd --name node --data-dir "$D/etcd" --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster node=http://127.0.0.1:2380 --log-level error --logger zap > "$L/etcd.log" 2>&1 < /dev/null &
  "$APISERVER" --etcd-servers=http://127.0.0.1:2379 --bind-address=0.0.0.0 --advertise-address=$NODE_IP --secure-port=6443 \
    --cert-dir="$D/certs" --token-auth-file="$D/tokens.csv" --authorization-mode=Node,RBAC \
    --kubelet-preferred-address-types=InternalIP --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$D/sa.pub" --service-account-signing-key-file="$D/sa.key" \
    --service-cluster-ip-range=$SERVICE_CIDR --enable-priority-and-fairness=false > "$L/apiserver.log" 2>&1 < /dev/null &
  local i
  for i in $(seq 300); do
    curl -skf -m 2 -H "Authorization: Bearer $ADMIN_TOKEN" "https://$NODE_IP:6443/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  [ -s "$D/certs/apiserver.crt" ] || die "kube-apiserver did not start: $(tail -20 "$L/apiserver.log")"
  "$K8S/kube-controller-manager" --kubeconfig="$D/kubeconfig" --service-account-private-key-file="$D/sa.key" \
    --root-ca-file="$D/certs/apiserver.crt" --leader-elect=false \
    --bind-address=127.0.0.1 --port=0 > "$L/kcm.log" 2>&1 < /dev/null &
  "$K8S/kube-scheduler" --kubeconfig="$D/kubeconfig" --leader-elect=false --bind-address=127.0.0.1 --port=0 \
    > "$L/scheduler.log" 2>&1 < /dev/null &

  local SOCK=/run/containerd/containerd.sock
  cat > "$D/containerd/config.toml" <<X
version = 2
root = "$D/containerd/root"
state = "/run/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:3.4.1"
  # Without CAP_SYS_RESOURCE the pause container's oom_score_adj -998 makes runc fail.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni/net.d"
X
  cat > "$D/cni/net.d/10-node.conflist" <<X
{"cniVersion": "0.4.0", "name": "node", "plugins": [{"type": "bridge", "bridge": "cni0", "isGateway": true,
  "ipMasq": false, "hairpinMode": true, "ipam": {"type": "host-local", "dataDir": "$D/cni/ipam",
  "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
X
  containerd --config "$D/containerd/config.toml" > "$L/containerd.log" 2>&1 < /dev/null &
  for i in $(seq 200); do [ -S "$SOCK" ] && break; sleep 0.1; done
  [ -S "$SOCK" ] || die "containerd did not start: $(tail -20 "$L/containerd.log")"
  ctr --address "$SOCK" -n k8s.io images import --base-name localhost/pause "$K8S/pause-oci.tar" > "$L/import.log"
  if [ $# -gt 0 ]; then
    ctr --address "$SOCK" -n k8s.io images import --base-name localhost/tooljet-gitsync-operator "$1" >> "$L/import.log"
  fi
  local images; images=$(ctr --address "$SOCK" -n k8s.io images ls -q)
  echo "$images" > "$L/images"
  grep -qx localhost/pause:3.4.1 <<<"$images" || die "pause image not imported: $images"
  [ $# -eq 0 ] || grep -qx localhost/tooljet-gitsync-operator:dev <<<"$images" || die "operator image not imported: $images"

  # kubelet's cgroups go under a subtree of their own (removed by the caller), in every hierarchy.
  local CG; CG=tjgs-$(basename "$D")
  for f in /sys/fs/cgroup/*/; do
    [ -e "$f/cgroup.procs" ] && mkdir -p "$f$CG"
  done
  echo "$CG" > "$D/cgroup-root"
  "$K8S/kubelet" --kubeconfig="$D/kubeconfig" --container-runtime=remote --container-runtime-endpoint="unix://$SOCK" \
    --containerd="$SOCK" --pod-manifest-path="$D/manifests" --cgroup-driver=cgroupfs --cgroup-root="/$CG" \
    --fail-swap-on=false --hostname-override=$NODE --node-ip=$NODE_IP --address=$NODE_IP --read-only-port=0 \
    --healthz-bind-address=127.0.0.1 --make-iptables-util-chains=false --volume-plugin-dir="$D/kubelet-plugins" \
    --cert-dir=/var/lib/kubelet/pki --image-gc-high-threshold=100 --image-gc-low-threshold=99 \
    --eviction-hard='memory.available<1Mi,nodefs.available<1%,imagefs.available<1%' \
    > "$L/kubelet.log" 2>&1 < /dev/null &
  "$K8S/kube-proxy" --kubeconfig="$D/kubeconfig" --proxy-mode=iptables --hostname-override=$NODE --cluster-cidr=$POD_CIDR \
    --conntrack-max-per-core=0 --conntrack-min=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
    --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256 > "$L/kube-proxy.log" 2>&1 < /dev/null &

  local kc=("$K8S/kubectl" --kubeconfig="$D/kubeconfig")
  for i in $(seq 600); do
    [ "$("${kc[@]}" get node $NODE -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] && break
    sleep 0.2
  done
  [ "$("${kc[@]}" get node $NODE -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] \
    || die "node not Ready: $(tail -30 "$L/kubelet.log")"
  for i in $(seq 300); do "${kc[@]}" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done
  echo "node Ready in $(( ($(date +%s%N) - started) / 1000000 )) ms"
}

case "${1:-}" in
  up) shift; [ $# -ge 1 ] || die "usage: hack/node.sh up DIR [IMAGE_TAR]"; up "$@" ;;
  *) die "usage: hack/node.sh up DIR [IMAGE_TAR]" ;;
esac
