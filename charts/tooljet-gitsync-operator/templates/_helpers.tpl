{{/*
Chart name, truncated to 63 characters (DNS label).
*/}}
{{- define "tooljet-gitsync-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release-qualified unless the release name already contains the chart name.
*/}}
{{- define "tooljet-gitsync-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tooljet-gitsync-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tooljet-gitsync-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tooljet-gitsync-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tooljet-gitsync-operator.labels" -}}
helm.sh/chart: {{ include "tooljet-gitsync-operator.chart" . }}
{{ include "tooljet-gitsync-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tooljet-gitsync
{{- end }}

{{- define "tooljet-gitsync-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tooljet-gitsync-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tooljet-gitsync-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "tooljet-gitsync-operator.leaseNamespace" -}}
{{- .Values.leaderElection.leaseNamespace | default .Release.Namespace }}
{{- end }}

{{/*
Rules of the operator's namespaced permissions: exactly what the reconcilers use.
*/}}
{{- define "tooljet-gitsync-operator.managerRules" -}}
- apiGroups: ["gitsync.tooljet.io"]
  resources: ["gitsyncconfigs", "appsyncsets"]
  verbs: ["get", "list", "watch", "patch", "update"]
# AppSyncSets generate (create, revert, delete) AppSyncs.
- apiGroups: ["gitsync.tooljet.io"]
  resources: ["appsyncs"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["gitsync.tooljet.io"]
  resources: ["gitsyncconfigs/status", "appsyncs/status", "appsyncsets/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["gitsync.tooljet.io"]
  resources: ["gitsyncconfigs/finalizers", "appsyncs/finalizers", "appsyncsets/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Fail early on combinations that cannot work.
*/}}
{{- define "tooljet-gitsync-operator.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicas > 1 requires leaderElection.enabled=true: two operators must not reconcile the same objects" }}
{{- end }}
{{- end }}

{{/*
An emptyDir volume source from {medium, sizeLimit}.
*/}}
{{- define "tooljet-gitsync-operator.emptyDir" -}}
{{- if or .medium .sizeLimit }}
emptyDir:
  {{- with .medium }}
  medium: {{ . }}
  {{- end }}
  {{- with .sizeLimit }}
  sizeLimit: {{ . | quote }}
  {{- end }}
{{- else }}
emptyDir: {}
{{- end }}
{{- end }}
