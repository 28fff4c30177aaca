#!/usr/bin/env bash
# A local playground on loopback: etcd + kube-apiserver 1.20.2 (the one the tests use), an
# OpenSSH sshd whose `git` user has git-shell as its shell, the ToolJet API emulator with sample
# apps, and the operator. `up` also applies a playground version of examples/quickstart/ and
# shows what the operator did.
#
#   hack/playground.sh up       start everything, apply the quick-start, wait for Ready, report
#   hack/playground.sh down     stop everything it started and remove its deploy keys and repo
#   hack/playground.sh status   what runs, and the objects
#   hack/playground.sh keys     authorize every GitSyncConfig's status.publicKey on the sshd
#
# State, pid files and logs live in .playground/ (git-ignored). Needs root (sshd, `git` user).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG="$ROOT/.playground"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tooljet-gitsync-operator"
APISERVER="${KUBE_APISERVER:-$CACHE/kube-apiserver-1.20.2}"
# sshd reads authorized_keys as the git user and git-shell serves the repository as that user,
# so both live in the git user's home (the checkout may sit under a 0700 directory like /root).
GITDIR="/home/git/tooljet-playground-$(printf %s "$ROOT" | sha256sum | cut -c1-8)"
REPO="$GITDIR/apps.git"
AUTH_KEYS="$GITDIR/authorized_keys"
NS=tooljet-dev
TOKEN=playground-token
PASSWORD=playground-password
APP="Sample App 1"
# Stopped in this order.
COMPONENTS=(operator emulator sshd apiserver etcd)

if [ -t 1 ]; then B=$'\033[1m' R=$'\033[1;31m' N=$'\033[0m'; else B='' R='' N=''; fi
say() { printf '%s==> %s%s\n' "$B" "$*" "$N"; }
UP_STARTED=
die() {
  printf '%splayground: ERROR: %s%s\n' "$R" "$*" "$N" >&2
  if [ -n "$UP_STARTED" ] && [ "$BASH_SUBSHELL" = 0 ] && [ -z "${PLAYGROUND_KEEP:-}" ]; then
    # A failed `up` leaves nothing running (PLAYGROUND_KEEP=1 keeps it for a look).
    UP_STARTED=
    trap - ERR
    echo "Tearing down what was started (PLAYGROUND_KEEP=1 keeps it running for debugging)" >&2
    (cmd_down) >&2 || true
  elif [ -d "$PG/pids" ] && [ -n "$(ls -A "$PG/pids" 2>/dev/null)" ]; then
    echo "Stop what was started: hack/playground.sh down" >&2
  fi
  [ -d "$PG/logs" ] && echo "Logs: $PG/logs/" >&2
  exit 1
}
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR

log_tail() { [ -f "$PG/logs/$1.log" ] && tail -n 25 "$PG/logs/$1.log" | sed "s/^/    [$1] /" >&2 || true; }

alive() { # name -> 0 when its recorded process still runs
  local f="$PG/pids/$1.pid" pid exe
  [ -f "$f" ] || return 1
  read -r pid exe <"$f"
  [ -n "$pid" ] && [ -e "/proc/$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ]
}

start_bg() { # name command...: own session (pgid = pid), output to logs/<name>.log
  local name=$1
  shift
  setsid "$@" >"$PG/logs/$name.log" 2>&1 </dev/null &
  local pid=$! exe i
  # Record the program itself, once setsid (and env) have exec'd into it.
  for i in $(seq 1 100); do
    sleep 0.1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || { log_tail "$name"; die "$name exited right after start"; }
    case "$exe" in */setsid | */env) ;; *) break ;; esac
  done
  sleep 0.2
  [ -e "/proc/$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] ||
    { log_tail "$name"; die "$name exited right after start"; }
  echo "$pid $exe" >"$PG/pids/$name.pid"
}

wait_until() { # seconds what component command...
  local limit=$1 what=$2 comp=$3
  shift 3
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if [ -n "$comp" ] && ! alive "$comp"; then
      log_tail "$comp"
      die "$comp stopped while waiting for: $what"
    fi
    if ((SECONDS - start > limit)); then
      [ -n "$comp" ] && log_tail "$comp"
      die "timed out after ${limit}s waiting for: $what"
    fi
    sleep 0.3
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

k() { KUBECONFIG="$PG/kubeconfig" kubectl "$@"; }

load_env() { [ -f "$PG/env" ] || die "no playground here ($PG/env missing): run hack/playground.sh up"; source "$PG/env"; }

ensure_tools() {
  [ "$(id -u)" = 0 ] || die "run as root: the playground starts sshd and uses the 'git' user"
  command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
  say "Dependencies (bash .ci/install-deps.sh; the first run builds kube-apiserver, ~4 min)"
  bash "$ROOT/.ci/install-deps.sh"
  local pkgs=()
  command -v git >/dev/null || pkgs+=(git)
  command -v python3 >/dev/null || pkgs+=(python3)
  command -v pgrep >/dev/null || pkgs+=(procps)
  # kubectl: Debian's kubernetes-client is 1.20, the same minor as the apiserver.
  command -v kubectl >/dev/null || pkgs+=(kubernetes-client)
  if [ "${#pkgs[@]}" -gt 0 ]; then
    say "Installing ${pkgs[*]} (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; }
  fi
  [ -x "$APISERVER" ] || die "kube-apiserver not found at $APISERVER after install-deps"
  command -v git-shell >/dev/null || [ -x /usr/lib/git-core/git-shell ] || die "git-shell not found"
}

ensure_git_user() {
  local shell
  shell=$(command -v git-shell || echo /usr/lib/git-core/git-shell)
  if ! id -u git >/dev/null 2>&1; then
    say "Creating user 'git' (login shell git-shell)"
    useradd --create-home --home-dir /home/git --shell "$shell" git
  fi
  usermod -p '*' git # unlocked for public-key logins (UsePAM no)
  mkdir -p /run/sshd
}

cmd_up() {
  mkdir -p "$PG"
  for c in "${COMPONENTS[@]}"; do
    alive "$c" && die "the playground is already running ($c); run hack/playground.sh down first"
  done
  local t0=$SECONDS
  ensure_tools

  say "Building the operator and the ToolJet emulator (cargo build)"
  (cd "$ROOT" && cargo build -q --bin tooljet-gitsync-operator -p tooljet-gitsync-operator &&
    cargo build -q --bin tooljet-emulator -p tooljet-gitsync-testkit)
  local target
  target=$(cd "$ROOT" && cargo metadata -q --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  local OPERATOR="$target/debug/tooljet-gitsync-operator" EMULATOR="$target/debug/tooljet-emulator"

  rm -rf "$PG" "$GITDIR"
  mkdir -p "$PG"/{pids,logs,kube,git,data}
  UP_STARTED=1
  local ETCD_PORT ETCD_PEER API_PORT SSH_PORT TJ_PORT HTTP_PORT
  ETCD_PORT=$(free_port) ETCD_PEER=$(free_port) API_PORT=$(free_port)
  SSH_PORT=$(free_port) TJ_PORT=$(free_port) HTTP_PORT=$(free_port)
  cat >"$PG/env" <<EOF
API_PORT=$API_PORT
SSH_PORT=$SSH_PORT
TJ_PORT=$TJ_PORT
HTTP_PORT=$HTTP_PORT
OPERATOR=$OPERATOR
EOF

  say "Starting etcd (127.0.0.1:$ETCD_PORT) and kube-apiserver 1.20.2 (https://127.0.0.1:$API_PORT)"
  local K="$PG/kube"
  openssl genrsa -out "$K/sa.key" 2048 2>/dev/null
  openssl rsa -in "$K/sa.key" -pubout -out "$K/sa.pub" 2>/dev/null
  echo "admintoken,admin,admin-uid,system:masters" >"$K/tokens.csv"
  start_bg etcd etcd --name playground --data-dir "$K/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "playground=http://127.0.0.1:$ETCD_PEER" --log-level error --logger zap
  start_bg apiserver "$APISERVER" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --cert-dir="$K/certs" --token-auth-file="$K/tokens.csv" --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$K/sa.pub" \
    --service-account-signing-key-file="$K/sa.key" --service-cluster-ip-range=10.96.0.0/24 \
    --enable-priority-and-fairness=false --v=0
  wait_until 120 "kube-apiserver /readyz" apiserver \
    curl -skf -m 2 -H "Authorization: Bearer admintoken" "https://127.0.0.1:$API_PORT/readyz"
  wait_until 10 "apiserver certificate" apiserver test -f "$K/certs/apiserver.crt"
  cat >"$PG/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: playground
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $K/certs/apiserver.crt
users:
- name: admin
  user:
    token: admintoken
contexts:
- name: playground
  context: {cluster: playground, user: admin, namespace: $NS}
current-context: playground
EOF

  say "Installing the CRDs (tooljet-gitsync-operator crd | kubectl apply -f -)"
  "$OPERATOR" crd >"$PG/crds.yaml"
  # kubectl validates against the server's schema, and 1.20's knows no x-kubernetes-validations
  # (CEL rules, Kubernetes >= 1.25): the apiserver accepts the CRDs and ignores those rules.
  k apply --validate=false -f "$PG/crds.yaml"
  k wait --for condition=established --timeout=60s \
    crd/gitsyncconfigs.gitsync.tooljet.io crd/appsyncs.gitsync.tooljet.io \
    crd/appsyncsets.gitsync.tooljet.io >/dev/null

  say "Starting sshd with git-shell on 127.0.0.1:$SSH_PORT, bare repository $REPO"
  ensure_git_user
  install -d -o git -g git -m 755 "$GITDIR"
  git init -q --bare -b master "$REPO"
  chown -R git:git "$REPO"
  install -o git -g git -m 600 /dev/null "$AUTH_KEYS"
  ssh-keygen -q -t ed25519 -N '' -C playground-host -f "$PG/git/hostkey"
  cat >"$PG/git/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $PG/git/hostkey
PidFile $PG/git/sshd.pid
AuthorizedKeysFile $AUTH_KEYS
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers git
StrictModes no
PermitUserEnvironment no
AllowTcpForwarding no
X11Forwarding no
LogLevel VERBOSE
EOF
  /usr/sbin/sshd -t -f "$PG/git/sshd_config" || die "sshd rejects its config ($PG/git/sshd_config)"
  start_bg sshd /usr/sbin/sshd -D -e -f "$PG/git/sshd_config"
  wait_until 10 "sshd on port $SSH_PORT" sshd bash -c "exec 3<>/dev/tcp/127.0.0.1/$SSH_PORT"
  local host_key
  host_key="[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$PG/git/hostkey.pub")"

  say "Starting the ToolJet emulator on http://127.0.0.1:$TJ_PORT (3 sample apps)"
  start_bg emulator "$EMULATOR" --listen "127.0.0.1:$TJ_PORT" --token "$TOKEN" \
    --password "$PASSWORD" --seed-apps 3
  wait_until 15 "emulator" emulator grep -q '^listening on' "$PG/logs/emulator.log"
  local WS
  WS=$(sed -n 's/^workspace .* slug=\([^ ]*\) .*/\1/p' "$PG/logs/emulator.log" | head -n1)
  [ -n "$WS" ] || die "the emulator printed no workspace"

  say "Starting the operator (metrics on http://127.0.0.1:$HTTP_PORT/metrics)"
  start_bg operator env KUBECONFIG="$PG/kubeconfig" RUST_LOG=info "$OPERATOR" run \
    --data-dir "$PG/data" --http-addr "127.0.0.1:$HTTP_PORT" --log-format text
  wait_until 60 "operator /readyz" operator curl -sf -m 2 "http://127.0.0.1:$HTTP_PORT/readyz"

  say "Applying the quick-start ($PG/quickstart.yaml)"
  cat >"$PG/quickstart.yaml" <<EOF
# examples/quickstart/, pointed at the playground's git server and ToolJet emulator.
apiVersion: v1
kind: Namespace
metadata:
  name: $NS
---
apiVersion: v1
kind: Secret
metadata:
  name: tooljet-api
  namespace: $NS
stringData:
  token: $TOKEN
---
apiVersion: gitsync.tooljet.io/v1alpha1
kind: GitSyncConfig
metadata:
  name: sales
  namespace: $NS
spec:
  enabled: true
  repository:
    url: ssh://git@127.0.0.1:$SSH_PORT$REPO
    branch: master
    knownHosts: "$host_key"
  deployKey:
    type: ed25519
  tooljet:
    url: http://127.0.0.1:$TJ_PORT
    workspace: $WS
    credentialsSecretRef:
      name: tooljet-api
  commitAuthor:
    name: ToolJet GitSync
    email: gitsync@example.com
  interval: 1m
---
apiVersion: gitsync.tooljet.io/v1alpha1
kind: AppSync
metadata:
  name: sales-dashboard
  namespace: $NS
spec:
  gitSyncConfigRef:
    name: sales
  app: $APP
  direction: Push
  push:
    commitMessage: Add region filter
    author:
      name: Jane Doe
      email: jane@example.com
---
# examples/workspace/backup.yaml: every app of the workspace backed up, one generated AppSync
# per app ("$APP" is already handled by the AppSync above: the set reports the overlap).
apiVersion: gitsync.tooljet.io/v1alpha1
kind: AppSyncSet
metadata:
  name: sales-backup
  namespace: $NS
spec:
  gitSyncConfigRef:
    name: sales
  direction: Push
  template:
    push:
      commitMessage: Backup
EOF
  k apply -f "$PG/quickstart.yaml"

  say "Waiting for the deploy key (status.publicKey), then adding it to the git server"
  wait_until 60 "GitSyncConfig sales: status.publicKey" operator \
    bash -c "KUBECONFIG='$PG/kubeconfig' kubectl get gsc sales -o jsonpath='{.status.publicKey}' | grep -q ssh-"
  cmd_keys >/dev/null
  say "Waiting for GitSyncConfig sales to be Ready"
  if ! k wait gsc/sales --for=condition=Ready --timeout=120s >/dev/null; then
    k describe gsc sales >&2 || true
    log_tail operator
    die "GitSyncConfig sales did not become Ready"
  fi
  say "Waiting for AppSync sales-dashboard to push \"$APP\""
  if ! k wait aps/sales-dashboard --for=condition=Ready --timeout=120s >/dev/null; then
    k describe aps sales-dashboard >&2 || true
    log_tail operator
    die "AppSync sales-dashboard did not become Ready"
  fi
  say "Waiting for AppSyncSet sales-backup to back up the whole workspace"
  if ! k wait apss/sales-backup --for=condition=Ready --timeout=120s >/dev/null; then
    k describe apss sales-backup >&2 || true
    log_tail operator
    die "AppSyncSet sales-backup did not become Ready"
  fi
  local app_id
  app_id=$(k get aps sales-dashboard -o jsonpath='{.status.git.gitAppId}')
  cat >"$PG/pull-into-staging.yaml" <<EOF
# Promotion: import "$APP" (by its id in git, so renames are followed) from git into the
# emulator's second workspace, "staging".
# After applying: hack/playground.sh keys   (adds the new config's deploy key to the git server)
apiVersion: gitsync.tooljet.io/v1alpha1
kind: GitSyncConfig
metadata:
  name: staging
  namespace: $NS
spec:
  repository:
    url: ssh://git@127.0.0.1:$SSH_PORT$REPO
    branch: master
    knownHosts: "$host_key"
  tooljet:
    url: http://127.0.0.1:$TJ_PORT
    workspace: staging
    credentialsSecretRef:
      name: tooljet-api
  interval: 1m
---
apiVersion: gitsync.tooljet.io/v1alpha1
kind: AppSync
metadata:
  name: sales-dashboard-staging
  namespace: $NS
spec:
  gitSyncConfigRef:
    name: staging
  app: "id:$app_id"
  direction: Pull
  pull:
    revision: master
    updatePolicy: Auto
EOF
  cat >"$PG/workspace-into-staging.yaml" <<EOF
# examples/workspace/migrate.yaml: every app of the repository imported into "staging", one
# generated AppSync per app. Needs the "staging" GitSyncConfig of pull-into-staging.yaml.
apiVersion: gitsync.tooljet.io/v1alpha1
kind: AppSyncSet
metadata:
  name: staging-release
  namespace: $NS
spec:
  gitSyncConfigRef:
    name: staging
  direction: Pull
  template:
    pull:
      revision: master
EOF

  echo
  say "Playground is up ($((SECONDS - t0)) s)"
  echo
  echo "kubectl get gitsyncconfigs,appsyncs,appsyncsets -o wide   (namespace $NS)"
  k get gsc,aps,apss -o wide | sed 's/^/  /'
  echo
  echo "The commit in the repository ($REPO):"
  git -c safe.directory='*' --git-dir="$REPO" log --stat -1 master | sed 's/^/  /'
  cat <<EOF

How to continue:
  export KUBECONFIG=$PG/kubeconfig     # context namespace: $NS
  kubectl get tooljet                                # every kind
  kubectl get apss sales-backup -o jsonpath='{.status.apps}'   # the whole workspace: counts, overlaps
  kubectl describe gsc sales                         # conditions and Events
  kubectl get aps sales-dashboard -o yaml            # status.lastCommit, status.git.path

  # Rename the app in ToolJet (the emulator), let the operator pick it up now: the folder moves in git
  curl -s -X PATCH -H 'Authorization: Basic $TOKEN' -H 'Content-Type: application/json' \\
    -d '{"name":"Sales Dashboard"}' http://127.0.0.1:$TJ_PORT/api/v2/ext/workspaces/$WS/apps/$(printf %s "$APP" | sed 's/ /%20/g')
  kubectl annotate aps sales-dashboard playground/poke=\$(date +%s) --overwrite
  git -c safe.directory='*' --git-dir=$REPO log --stat -1 master

  # Message of the next content commit, author, version to export: edit the AppSync
  kubectl edit aps sales-dashboard                   # spec.push.commitMessage, spec.push.author, spec.push.version

  # Rotate the deploy key, then authorize the new one on the git server
  kubectl annotate gsc sales gitsync.tooljet.io/rotate-key=\$(date +%s) --overwrite
  hack/playground.sh keys

  # Promote: pull the app from git into the "staging" workspace (a Pull AppSync)
  kubectl apply -f $PG/pull-into-staging.yaml && hack/playground.sh keys
  kubectl wait aps/sales-dashboard-staging --for=condition=Ready --timeout=2m
  kubectl get aps sales-dashboard-staging -o jsonpath='{.status.app}'   # the imported app in "staging"

  # Move the whole workspace into "staging" (a Pull AppSyncSet; after pull-into-staging.yaml)
  kubectl apply -f $PG/workspace-into-staging.yaml
  kubectl get apss staging-release -w

  curl -s http://127.0.0.1:$HTTP_PORT/metrics | grep tooljet_gitsync_   # metrics
  tail -f $PG/logs/operator.log                                   # logs of every part: $PG/logs/
  hack/playground.sh down                                         # stop everything
EOF
}

# Authorizes the public key of every GitSyncConfig (read-write) and asks for a check now.
cmd_keys() {
  load_env
  [ -f "$AUTH_KEYS" ] || die "no git server state ($AUTH_KEYS); run hack/playground.sh up"
  # Wait until every config shows the key for its current spec and rotate-key annotation: one
  # applied or rotated a moment ago may still show no key or the old one.
  local keys start=$SECONDS
  while :; do
    keys=$(k get gsc -A -o json | python3 -c '
import json, sys
pending = False
for g in json.load(sys.stdin)["items"]:
    m, st = g["metadata"], g.get("status") or {}
    rotate = (m.get("annotations") or {}).get("gitsync.tooljet.io/rotate-key")
    if not st.get("publicKey") or st.get("observedGeneration") != m.get("generation") \
            or st.get("lastHandledRotateKey") != rotate:
        pending = True
    elif st.get("publicKey"):
        print(st["publicKey"])
sys.exit(3 if pending else 0)') && break
    ((SECONDS - start < 60)) || die "a GitSyncConfig shows no current status.publicKey after 60s: kubectl get gsc -A"
    sleep 0.5
  done
  printf '%s\n' "$keys" >"$AUTH_KEYS.tmp"
  chown git:git "$AUTH_KEYS.tmp"
  chmod 600 "$AUTH_KEYS.tmp"
  mv "$AUTH_KEYS.tmp" "$AUTH_KEYS"
  echo "authorized $(grep -c '^ssh-' "$AUTH_KEYS" || true) deploy key(s) in $AUTH_KEYS"
  # The operator retries with backoff on its own; an annotation change makes it check now.
  local ns name
  k get gsc -A -o jsonpath='{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{"\n"}{end}' |
    while read -r ns name; do
      [ -n "$name" ] && k -n "$ns" annotate gsc "$name" "playground/keys-authorized=$(date +%s%N)" --overwrite >/dev/null
    done
}

stop_component() {
  local name=$1 f="$PG/pids/$1.pid" pid exe
  [ -f "$f" ] || return 0
  read -r pid exe <"$f"
  if alive "$name"; then
    # Each part runs in its own session: signal the whole group (sshd sessions, git, ssh).
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
      alive "$name" || break
      sleep 0.1
    done
    if alive "$name"; then
      echo "  $name (pid $pid) ignored SIGTERM; sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      sleep 0.3
    fi
    alive "$name" && die "could not stop $name (pid $pid)"
    echo "  stopped $name (pid $pid)"
  fi
  # Anything left in its process group (e.g. a git or ssh child).
  if pgrep -g "$pid" >/dev/null 2>&1; then
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

cmd_down() {
  if [ ! -d "$PG/pids" ]; then
    echo "no playground state in $PG; nothing to stop"
  else
    say "Stopping the playground"
    local c
    for c in "${COMPONENTS[@]}"; do
      stop_component "$c"
    done
  fi
  if [ -d "$GITDIR" ]; then
    say "Removing the playground's authorized deploy keys and repository ($GITDIR); the 'git' user stays"
    rm -rf "$GITDIR"
  fi
  # Keep the logs for a post-mortem; everything else goes (etcd data, certs, keys, mirrors).
  if [ -d "$PG" ]; then
    find "$PG" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
  fi
  sleep 0.2
  local left
  left=$(pgrep -af -- "$PG/|$GITDIR" | grep -v "^$$ " || true)
  [ -z "$left" ] || die "processes of the playground are still running:
$left"
  say "Playground down: no process left (pgrep -f '$PG/' finds nothing); logs kept in $PG/logs/"
}

cmd_status() {
  load_env
  local c
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then
      echo "  $c: running (pid $(cut -d' ' -f1 "$PG/pids/$c.pid"))"
    else
      echo "  $c: not running"
    fi
  done
  if alive apiserver; then
    k get gsc,aps -o wide
  fi
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
keys) cmd_keys ;;
*)
  echo "usage: $0 up|down|status|keys" >&2
  exit 2
  ;;
esac
