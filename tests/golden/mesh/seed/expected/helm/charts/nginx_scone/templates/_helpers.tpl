{{/* Helpers of the nginx_scone subchart; prefixed: define names are global across subcharts. */}}
{{- define "nginx_scone.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nginx_scone.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "nginx_scone.name" . | lower | replace "_" "-") | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "nginx_scone.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nginx_scone.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nginx_scone.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "nginx_scone.labels" -}}
helm.sh/chart: {{ include "nginx_scone.chart" . }}
{{ include "nginx_scone.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | default .Chart.Version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ .Values.scone.config_id | splitList "/" | first | quote }}
{{- end }}

{{- define "nginx_scone.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nginx_scone.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "nginx_scone.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default "latest") }}
{{- end }}
{{- end }}
