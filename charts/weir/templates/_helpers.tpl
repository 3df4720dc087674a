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
