{{- define "veil-wrapper.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "veil-wrapper.serviceAccount" -}}
{{- default (include "veil-wrapper.name" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "veil-wrapper.selector" -}}
app.kubernetes.io/name: veil-wrapper
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{- define "veil-wrapper.labels" -}}
{{ include "veil-wrapper.selector" . }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/component: {{ .Values.kind | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- with .Values.veil.team }}
veil.dev/team: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "veil-wrapper.env" -}}
{{- range $name, $value := . }}
- name: {{ $name | quote }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}
