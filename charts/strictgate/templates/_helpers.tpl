{{/*
Names. Every object name goes through these helpers and is cut to 63 characters:
Service names are DNS-1035 labels and label values have the same limit, so a long
release name must never produce an object the API server rejects.
*/}}

{{- define "strictgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
strictgate.fullname is the release-scoped base name. A release called "strictgate"
(the documented install) gives plain "strictgate", so the objects get the names the
webhook's and agent's defaults expect (strictgate-webhook, strictgate-agent).
*/}}
{{- define "strictgate.fullname" -}}
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

{{/*
strictgate.componentName appends a suffix to the full name and cuts the whole to 63:
cutting the base first and appending afterwards would overshoot.
Call with (list $ "webhook").
*/}}
{{- define "strictgate.componentName" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- $base := include "strictgate.fullname" $root }}
{{- $max := sub 62 (len $suffix) | int }}
{{- printf "%s-%s" ($base | trunc $max | trimSuffix "-") $suffix }}
{{- end }}

{{- define "strictgate.webhook.name" -}}
{{- include "strictgate.componentName" (list . "webhook") }}
{{- end }}

{{- define "strictgate.agent.name" -}}
{{- include "strictgate.componentName" (list . "agent") }}
{{- end }}

{{- define "strictgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "strictgate.namespace" -}}
{{- .Release.Namespace }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "strictgate.labels" -}}
helm.sh/chart: {{ include "strictgate.chart" . }}
app.kubernetes.io/name: {{ include "strictgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: strictgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of a component; call with (list $ "webhook"). */}}
{{- define "strictgate.selectorLabels" -}}
{{- $root := index . 0 }}
app.kubernetes.io/name: {{ include "strictgate.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Labels of a component's objects; call with (list $ "webhook"). */}}
{{- define "strictgate.componentLabels" -}}
{{ include "strictgate.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Service accounts. */}}
{{- define "strictgate.webhook.serviceAccountName" -}}
{{- if .Values.webhook.serviceAccount.create }}
{{- default (include "strictgate.webhook.name" .) .Values.webhook.serviceAccount.name }}
{{- else }}
{{- required "webhook.serviceAccount.name is required when webhook.serviceAccount.create is false" .Values.webhook.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "strictgate.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (include "strictgate.agent.name" .) .Values.agent.serviceAccount.name }}
{{- else }}
{{- required "agent.serviceAccount.name is required when agent.serviceAccount.create is false" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Full usernames the API server gives the two service accounts. */}}
{{- define "strictgate.webhook.username" -}}
{{- printf "system:serviceaccount:%s:%s" (include "strictgate.namespace" .) (include "strictgate.webhook.serviceAccountName" .) }}
{{- end }}

{{- define "strictgate.agent.username" -}}
{{- printf "system:serviceaccount:%s:%s" (include "strictgate.namespace" .) (include "strictgate.agent.serviceAccountName" .) }}
{{- end }}

{{/* The one image both components run: repository:tag, or repository@digest. */}}
{{- define "strictgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* TLS: the Secret the webhook serves from and the names the certificate covers. */}}
{{- define "strictgate.webhook.tlsSecretName" -}}
{{- include "strictgate.componentName" (list . "webhook-tls") }}
{{- end }}

{{/* The Secret the webhook rotates its CA and serving certificate in (selfSignedCert.rotate). */}}
{{- define "strictgate.webhook.certSecretName" -}}
{{- include "strictgate.componentName" (list . "webhook-cert") }}
{{- end }}

{{/* Whether the webhook rotates its own certificates: rotation on and no cert-manager. */}}
{{- define "strictgate.webhook.rotatesCerts" -}}
{{- if and .Values.selfSignedCert.rotate (not .Values.certManager.enabled) }}true{{ end }}
{{- end }}

{{- define "strictgate.webhook.dnsNames" -}}
{{- $svc := include "strictgate.webhook.name" . }}
{{- $ns := include "strictgate.namespace" . }}
{{- list (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) | toJson }}
{{- end }}

{{/*
Namespaces strictgate never enforces (DESIGN.md): the system namespaces, its own, and
the configured list. The admission webhooks skip them with a namespaceSelector so that
a webhook outage can never block kube-system or strictgate's own pods.
*/}}
{{- define "strictgate.excludedNamespaces" -}}
{{- $ns := list "kube-system" "kube-public" "kube-node-lease" (include "strictgate.namespace" .) }}
{{- concat $ns .Values.enforcement.excludedNamespaces | uniq | toJson }}
{{- end }}

{{/*
namespaceSelector of the pod mutator: the exclusions, AND enforcement.namespaceSelector
(a LabelSelector's matchLabels and matchExpressions are ANDed, so appending the user's
requirements to ours narrows exactly as the webhook's own check does). A namespace the
selector leaves out never waits for the webhook, as an excluded one does not.
*/}}
{{- define "strictgate.enforcedNamespaceSelector" -}}
{{- $user := .Values.enforcement.namespaceSelector | default dict }}
{{- with $user.matchLabels }}
matchLabels: {{ toJson . }}
{{- end }}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ include "strictgate.excludedNamespaces" . }}
  - key: strictgate.dev/enforce
    operator: NotIn
    values: ["disabled"]
{{- range $user.matchExpressions }}
  - {{ toJson . }}
{{- end }}
{{- end }}

{{/*
The enforcement scope as flags: the webhook and the agent get the same ones, since they
must agree on which namespaces are enforced (the agent holds a new pod of an enforced
namespace unprogrammed until its strictgate-default-deny exists).
*/}}
{{- define "strictgate.enforcementArgs" -}}
- --namespace={{ include "strictgate.namespace" . }}
{{- range .Values.enforcement.excludedNamespaces }}
- --exclude-namespace={{ . }}
{{- end }}
{{- with .Values.enforcement.namespaceSelector }}
- {{ printf "--namespace-selector=%s" (toJson .) | quote }}
{{- end }}
- --default-deny={{ .Values.enforcement.defaultDeny }}
{{- end }}

{{/* Pod securityContext shared by the webhook (non-root) pods. */}}
{{- define "strictgate.restrictedContainerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
strictgate.fileDocs parses a multi-document YAML file of the chart (files/) into a JSON
list of objects, skipping comment-only documents; call with (list $ "files/x.yaml").
The files are shared byte for byte with the Go tests, so the chart edits parsed
objects instead of keeping a second copy of their text.
*/}}
{{- define "strictgate.fileDocs" -}}
{{- $root := index . 0 }}
{{- $file := index . 1 }}
{{- $content := $root.Files.Get $file }}
{{- if not $content }}
{{- fail (printf "chart file %s is missing or empty" $file) }}
{{- end }}
{{- $out := list }}
{{- range $i, $doc := regexSplit "(?m)^---[ \\t]*$" $content -1 }}
{{- $obj := fromYaml $doc }}
{{- if hasKey $obj "Error" }}
{{- fail (printf "chart file %s, document %d: %s" $file $i (get $obj "Error")) }}
{{- end }}
{{- if $obj }}
{{- $out = append $out $obj }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* The ConfigMap holding custom hygiene rules, or "" when there are none. */}}
{{- define "strictgate.webhook.hygieneConfigMap" -}}
{{- if .Values.webhook.hygiene.existingConfigMap }}
{{- .Values.webhook.hygiene.existingConfigMap }}
{{- else if .Values.webhook.hygiene.customRules }}
{{- include "strictgate.componentName" (list . "hygiene-rules") }}
{{- end }}
{{- end }}

{{/*
Whether the readiness gate is injected by the MutatingAdmissionPolicy
(files/gate-injector.yaml) instead of the webhook's pod mutator (gate.injection).
*/}}
{{- define "strictgate.gatePolicy" -}}
{{- $mode := .Values.gate.injection }}
{{- if eq $mode "policy" }}true
{{- else if and (eq $mode "auto") (.Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy") }}true
{{- end }}
{{- end }}
