{{/* Names of the faultline-load chart: every object is <release>-<part>. */}}

{{- define "faultline-load.labels" -}}
app.kubernetes.io/name: faultline-load
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "faultline-load.image" -}}
{{ required "image.repository is required: the faultline image built from deploy/Dockerfile" .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "faultline-load.claim" -}}
{{ .Values.storage.existingClaim | default (printf "%s-results" .Release.Name) }}
{{- end }}
