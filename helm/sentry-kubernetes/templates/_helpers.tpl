{{/* The chart name, or nameOverride. */}}
{{- define "sentry-kubernetes.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: release-chart, or fullnameOverride. */}}
{{- define "sentry-kubernetes.fullname" -}}
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

{{- define "sentry-kubernetes.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sentry-kubernetes.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sentry-kubernetes.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sentry-kubernetes.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sentry-kubernetes.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sentry-kubernetes.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the DSN: existingSecret, or the one the chart creates. */}}
{{- define "sentry-kubernetes.secretName" -}}
{{- default (include "sentry-kubernetes.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Whether a DSN reaches the agent at all. */}}
{{- define "sentry-kubernetes.hasDsn" -}}
{{- if or .Values.existingSecret .Values.sentry.dsn }}true{{ end }}
{{- end }}

{{/* A whole-number setting as the agent reads it: plain digits. Numbers from values files
(and JSON) are float64 in Helm, which toString writes as 1e+06 from a million on, and the
agent refuses that. printf "%.0f" cannot overflow as int64 would; other values (ints from
--set, strings, fractions) pass as written, so the agent names anything it cannot read. */}}
{{- define "sentry-kubernetes.integer" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) }}{{ printf "%.0f" . }}{{ else }}{{ toString . }}{{ end }}
{{- end }}

{{/* A value of the community chart's booleans ("1", "true", true) as the agent reads it. */}}
{{- define "sentry-kubernetes.bool" -}}
{{- $v := . | toString | lower | trim }}
{{- if has $v (list "1" "true" "yes" "on") }}true{{ else }}false{{ end }}
{{- end }}

{{/* sentry.leaderElection as the agent reads it: auto (also for empty), true or false. */}}
{{- define "sentry-kubernetes.switch" -}}
{{- $v := . | toString | lower | trim }}
{{- if or (eq $v "auto") (eq $v "") }}auto{{ else }}{{ include "sentry-kubernetes.bool" . }}{{ end }}
{{- end }}

{{/* Whether the replicas take turns through the Lease: leader election on, or auto in the
cluster (the agent's auto is off out of the cluster, where it runs alone). */}}
{{- define "sentry-kubernetes.election" -}}
{{- $switch := include "sentry-kubernetes.switch" .Values.sentry.leaderElection }}
{{- if or (eq $switch "true") (and (eq $switch "auto") (ne (toString .Values.sentry.clusterConfigType) "out-cluster")) }}true{{ end }}
{{- end }}

{{/* Whether the agent uses the Lease: for its checkpoint, or for leader election. */}}
{{- define "sentry-kubernetes.leaseUsed" -}}
{{- if or (eq (include "sentry-kubernetes.bool" .Values.sentry.checkpoint) "true") (include "sentry-kubernetes.election" .) }}true{{ end }}
{{- end }}

{{/* The Lease's name: lease.name, else the full name, so two releases in one namespace
never share (and fight over) one Lease. */}}
{{- define "sentry-kubernetes.leaseName" -}}
{{- .Values.lease.name | default (include "sentry-kubernetes.fullname" .) }}
{{- end }}

{{/* A duration as the agent reads it (90, 500ms, 30s, 5m, 1h), in whole milliseconds;
fails naming the key. Called with (list "key" value). */}}
{{- define "sentry-kubernetes.milliseconds" -}}
{{- $key := index . 0 }}
{{- $v := index . 1 | toString | trim }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)?$" $v) }}
{{- fail (printf "%s: %q is not a duration such as 30s, 500ms, 5m or 1h" $key $v) }}
{{- end }}
{{- $number := regexReplaceAll "[a-z]+$" $v "" }}
{{- $unit := regexReplaceAll "^[0-9.]+" $v "" | default "s" }}
{{- $factor := get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000) $unit }}
{{- mulf (float64 $number) $factor | ceil | int64 }}
{{- end }}

{{/* The watched namespaces, deduplicated, as a list; ["__all__"] for all. */}}
{{- define "sentry-kubernetes.namespaces" -}}
{{- $all := false }}
{{- $list := list }}
{{- range (splitList "," (toString .Values.sentry.watchNamespaces)) }}
{{- $ns := trim . }}
{{- if eq $ns "__all__" }}
{{- $all = true }}
{{- else if $ns }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" $ns) }}
{{- fail (printf "sentry.watchNamespaces: %q is not a valid namespace name (lowercase letters, digits and '-', at most 63)" $ns) }}
{{- end }}
{{- $list = append $list $ns | uniq }}
{{- end }}
{{- end }}
{{- if $all }}
{{- toJson (list "__all__") }}
{{- else if not $list }}
{{- toJson (list "default") }}
{{- else }}
{{- toJson $list }}
{{- end }}
{{- end }}

{{/* The rules the agent needs in the namespaces it watches: exactly the verbs it uses. */}}
{{- define "sentry-kubernetes.rules" -}}
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list", "watch"]
# Container crashes from pod status (the Go agent's pod watch); owner lookups of pods.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
{{- if gt (int .Values.sentry.containerLogs) 0 }}
# A crashed container's last lines (containerLogs).
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
{{- end }}
# Owner lookups: metadata-only GETs up the controller chain.
- apiGroups: [""]
  resources: ["replicationcontrollers"]
  verbs: ["get"]
- apiGroups: ["apps"]
  resources: ["replicasets", "deployments", "statefulsets", "daemonsets"]
  verbs: ["get"]
{{- if eq (include "sentry-kubernetes.bool" .Values.sentry.monitorCronjobs) "true" }}
# Crons: Job runs, and CronJobs for their schedules and annotations.
- apiGroups: ["batch"]
  resources: ["jobs", "cronjobs"]
  verbs: ["get", "list", "watch"]
{{- else }}
- apiGroups: ["batch"]
  resources: ["jobs", "cronjobs"]
  verbs: ["get"]
{{- end }}
{{- end }}

{{/* The hard rules of the values schema, repeated so they hold even without it. */}}
{{- define "sentry-kubernetes.validate" -}}
{{- $replicas := int .Values.replicaCount }}
{{- if lt $replicas 1 }}
{{- fail (printf "replicaCount: %v; at least 1" .Values.replicaCount) }}
{{- end }}
{{- if and (gt $replicas 1) (not (include "sentry-kubernetes.election" .)) }}
{{- $why := printf "sentry.leaderElection is %v" .Values.sentry.leaderElection }}
{{- if eq (include "sentry-kubernetes.switch" .Values.sentry.leaderElection) "auto" }}
{{- $why = "sentry.leaderElection auto is off out of the cluster (sentry.clusterConfigType out-cluster)" }}
{{- end }}
{{- fail (printf "replicaCount: %d replicas need leader election, but %s: each replica would report every event. Use replicaCount 1, or sentry.leaderElection true" $replicas $why) }}
{{- end }}
{{- $leaseName := include "sentry-kubernetes.leaseName" . }}
{{- if or (gt (len $leaseName) 253) (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" $leaseName)) }}
{{- fail (printf "lease.name: %q is not a valid object name (lowercase letters, digits, '-' and '.')" $leaseName) }}
{{- end }}
{{- /* The agent exits (status 2) unless lease > renew deadline > retry period > 0. */}}
{{- $lease := include "sentry-kubernetes.milliseconds" (list "lease.duration" .Values.lease.duration) | int64 }}
{{- $renew := include "sentry-kubernetes.milliseconds" (list "lease.renewDeadline" .Values.lease.renewDeadline) | int64 }}
{{- $retry := include "sentry-kubernetes.milliseconds" (list "lease.retryPeriod" .Values.lease.retryPeriod) | int64 }}
{{- if le $retry 0 }}
{{- fail (printf "lease.retryPeriod: %v must be more than zero" .Values.lease.retryPeriod) }}
{{- end }}
{{- if le $renew $retry }}
{{- fail (printf "lease.renewDeadline: %v must be longer than lease.retryPeriod (%v)" .Values.lease.renewDeadline .Values.lease.retryPeriod) }}
{{- end }}
{{- if le $lease $renew }}
{{- fail (printf "lease.duration: %v must be longer than lease.renewDeadline (%v): a leader must stop before another can start" .Values.lease.duration .Values.lease.renewDeadline) }}
{{- end }}
{{- /* After SIGTERM the agent flushes for up to shutdownTimeout, then writes its last
checkpoint and releases the Lease (allowed 2s more); the kubelet must not kill it first. */}}
{{- $shutdown := include "sentry-kubernetes.milliseconds" (list "sentry.shutdownTimeout" .Values.sentry.shutdownTimeout) | int64 }}
{{- $release := ternary 2000 0 (eq (include "sentry-kubernetes.leaseUsed" .) "true") }}
{{- if le (mul (int64 .Values.terminationGracePeriodSeconds) 1000) (add $shutdown $release) }}
{{- fail (printf "terminationGracePeriodSeconds: %v must be longer than sentry.shutdownTimeout (%v)%s, or the agent is killed before it has flushed%s" .Values.terminationGracePeriodSeconds .Values.sentry.shutdownTimeout (ternary " plus 2s" "" (gt $release 0)) (ternary " and released the Lease" "" (gt $release 0))) }}
{{- end }}
{{- $level := .Values.sentry.logLevel | toString | lower }}
{{- if and $level (not (has $level (list "trace" "debug" "info" "warn" "warning" "error" "fatal" "panic" "disabled" "off"))) }}
{{- fail (printf "sentry.logLevel: %q is not one of trace, debug, info, warn, error, fatal, panic, disabled" .Values.sentry.logLevel) }}
{{- end }}
{{- $type := .Values.sentry.clusterConfigType | toString }}
{{- if and $type (not (has $type (list "auto" "in-cluster" "out-cluster"))) }}
{{- fail (printf "sentry.clusterConfigType: %q is not one of auto, in-cluster, out-cluster" $type) }}
{{- end }}
{{- if eq (toString .Values.sentry.dsn) "<change-me>" }}
{{- fail "sentry.dsn: still <change-me>; set your project's DSN (or existingSecret)" }}
{{- end }}
{{- end }}
