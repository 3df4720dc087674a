{{- define "weir.name" -}}{{ .Chart.Name }}{{- end -}}
{{- define "weir.fullname" -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "weir.labels" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "weir.selector" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "weir.tlsSecret" -}}{{ include "weir.fullname" . }}-tls{{- end -}}
{{- define "weir.serviceDns" -}}{{ include "weir.fullname" . }}.{{ .Release.Namespace }}.svc{{- end -}}

{{- /*
With failurePolicy Fail, a selector that does not require the opt-in label would put every
namespace's deploys behind weir (the kubevela #670 outage): refuse to render it.
*/ -}}
{{- define "weir.validateSelector" -}}
{{- if eq .Values.webhook.failurePolicy "Fail" -}}
{{- $selector := .Values.webhook.namespaceSelector | default dict -}}
{{- $optIn := eq (index ($selector.matchLabels | default dict) "weir.dev/canary" | default "") "enabled" -}}
{{- range ($selector.matchExpressions | default list) -}}
{{- if and (eq .key "weir.dev/canary") (eq .operator "In") (eq (len .values) 1) (has "enabled" .values) -}}{{- $optIn = true -}}{{- end -}}
{{- end -}}
{{- if not $optIn -}}
{{- fail "webhook.namespaceSelector must require the opt-in label weir.dev/canary=enabled when webhook.failurePolicy is Fail: otherwise a broken weir blocks the deploys of every namespace it selects" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
webhook.namespaceSelector as a CEL condition over `namespaceObject`'s labels, with Kubernetes'
meaning: the admission policy confines the analyzer to the namespaces the webhook guards.
*/}}
{{- define "weir.namespaceSelectorCel" -}}
{{- $selector := .Values.webhook.namespaceSelector | default dict -}}
{{- $terms := list -}}
{{- range $key, $value := ($selector.matchLabels | default dict) -}}
{{- $terms = append $terms (printf "variables.namespaceLabels[?%s] == optional.of(%s)" (squote $key) (squote $value)) -}}
{{- end -}}
{{- range ($selector.matchExpressions | default list) -}}
{{- $values := list -}}{{- range (.values | default list) -}}{{- $values = append $values (squote .) -}}{{- end -}}
{{- $list := printf "[%s]" (join ", " $values) -}}
{{- if eq .operator "In" -}}{{- $terms = append $terms (printf "(%s in variables.namespaceLabels && variables.namespaceLabels[%s] in %s)" (squote .key) (squote .key) $list) -}}
{{- else if eq .operator "NotIn" -}}{{- $terms = append $terms (printf "!(%s in variables.namespaceLabels && variables.namespaceLabels[%s] in %s)" (squote .key) (squote .key) $list) -}}
{{- else if eq .operator "Exists" -}}{{- $terms = append $terms (printf "%s in variables.namespaceLabels" (squote .key)) -}}
{{- else if eq .operator "DoesNotExist" -}}{{- $terms = append $terms (printf "!(%s in variables.namespaceLabels)" (squote .key)) -}}
{{- else -}}{{- fail (printf "webhook.namespaceSelector: operator %s is not In, NotIn, Exists or DoesNotExist" .operator) -}}
{{- end -}}
{{- end -}}
{{- if $terms -}}{{ join " && " $terms }}{{- else -}}true{{- end -}}
{{- end -}}
