"""The templates of a service's subchart (Go templates, rendered by Helm).

Helm's `define` names are global across an umbrella chart and its subcharts, so every helper is
prefixed with the subchart's own name: `@N@` below is replaced by it. The container gets only
what the launcher needs to reach CAS (`SCONE_CONFIG_ID`, `SCONE_CAS_ADDR`, `SCONE_CAS_KEY`);
the program's configuration comes from CAS after attestation, never from the chart.
"""

from __future__ import annotations

__all__ = ["HELPERS", "HOST_PATH_TEMPLATES", "NOTES", "SERVICE_NOTES", "TEMPLATES"]

HELPERS = """\
{{/* Helpers of the @N@ subchart; prefixed: define names are global across subcharts. */}}
{{- define "@N@.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "@N@.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "@N@.name" . | lower | replace "_" "-")\
 | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "@N@.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "@N@.selectorLabels" -}}
app.kubernetes.io/name: {{ include "@N@.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "@N@.labels" -}}
helm.sh/chart: {{ include "@N@.chart" . }}
{{ include "@N@.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | default .Chart.Version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ .Values.scone.config_id | splitList "/" | first | quote }}
{{- end }}

{{- define "@N@.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "@N@.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "@N@.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default "latest") }}
{{- end }}
{{- end }}
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "@N@.fullname" . }}
  labels:
    {{- include "@N@.labels" . | nindent 4 }}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels:
      {{- include "@N@.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      {{- with .Values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      labels:
        {{- include "@N@.selectorLabels" . | nindent 8 }}
    spec:
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      serviceAccountName: {{ include "@N@.serviceAccountName" . }}
      {{- with .Values.podSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ include "@N@.name" . | lower | replace "_" "-" }}
          image: {{ include "@N@.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          {{- with .Values.securityContext }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          env:
            # where the launcher attests; the program's configuration comes from CAS
            - name: SCONE_CONFIG_ID
              value: {{ .Values.scone.config_id | quote }}
            - name: SCONE_CAS_ADDR
              value: {{ .Values.scone.cas_addr | quote }}
            - name: SCONE_CAS_KEY
              value: {{ .Values.scone.cas_key | quote }}
          ports:
            - name: service
              containerPort: {{ .Values.service.port }}
              protocol: TCP
          {{- with .Values.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: {{ include "@N@.fullname" . }}
  labels:
    {{- include "@N@.labels" . | nindent 4 }}
spec:
  type: {{ .Values.service.type }}
  ports:
    - port: {{ .Values.service.port }}
      targetPort: service
      protocol: TCP
      name: service
  selector:
    {{- include "@N@.selectorLabels" . | nindent 4 }}
"""

SERVICE_ACCOUNT = """\
{{- if .Values.serviceAccount.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "@N@.serviceAccountName" . }}
  labels:
    {{- include "@N@.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
"""

SERVICE_NOTES = """\
{{ include "@N@.fullname" . }}: image {{ include "@N@.image" . }}
  attests to CAS {{ .Values.scone.cas_addr }} as {{ .Values.scone.config_id }}
"""

NOTES = """\
Release {{ .Release.Name }}: the confidential mesh @NS@ (@COUNT@ service(s)).

Every container starts with Veil's launcher, which attests to CAS and only then receives its
configuration and secrets (session @NS@/<service>). A pod whose image was changed is refused by
CAS and never starts its program.

  kubectl get pods -l app.kubernetes.io/instance={{ .Release.Name }}
"""

TEMPLATES = {
    "templates/_helpers.tpl": HELPERS,
    "templates/deployment.yaml": DEPLOYMENT,
    "templates/service.yaml": SERVICE,
    "templates/serviceaccount.yaml": SERVICE_ACCOUNT,
    "templates/NOTES.txt": SERVICE_NOTES,
}

# A service with `build.host_paths` (the launcher accepts a mount there and nowhere else outside
# its runtime paths): each `hostPaths` entry of the values is a hostPath volume and its mount.
# Only such services get these lines, so every other chart stays byte for byte as it was.
_MOUNTS = """\
          {{- with .Values.hostPaths }}
          volumeMounts:
            {{- range . }}
            - name: {{ .name }}
              mountPath: {{ .mountPath | quote }}
              readOnly: {{ if hasKey . "readOnly" }}{{ .readOnly }}{{ else }}true{{ end }}
            {{- end }}
          {{- end }}
"""

_VOLUMES = """\
      {{- with .Values.hostPaths }}
      volumes:
        {{- range . }}
        - name: {{ .name }}
          hostPath:
            path: {{ .hostPath | default .mountPath | quote }}
            {{- with .type }}
            type: {{ . }}
            {{- end }}
        {{- end }}
      {{- end }}
"""

_ANCHOR = "      {{- with .Values.nodeSelector }}\n"
assert DEPLOYMENT.count(_ANCHOR) == 1

HOST_PATH_TEMPLATES = {
    **TEMPLATES,
    "templates/deployment.yaml": DEPLOYMENT.replace(_ANCHOR, _MOUNTS + _ANCHOR) + _VOLUMES,
}
