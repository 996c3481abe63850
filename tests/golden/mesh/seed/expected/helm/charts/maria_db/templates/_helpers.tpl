{{/* Helpers of the maria_db subchart; prefixed: define names are global across subcharts. */}}
{{- define "maria_db.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "maria_db.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "maria_db.name" . | lower | replace "_" "-") | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "maria_db.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "maria_db.selectorLabels" -}}
app.kubernetes.io/name: {{ include "maria_db.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "maria_db.labels" -}}
helm.sh/chart: {{ include "maria_db.chart" . }}
{{ include "maria_db.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | default .Chart.Version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ .Values.scone.config_id | splitList "/" | first | quote }}
{{- end }}

{{- define "maria_db.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "maria_db.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "maria_db.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default "latest") }}
{{- end }}
{{- end }}
