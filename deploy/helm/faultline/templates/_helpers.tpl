{{/*
Shared names and fragments of the faultline chart. Every object is named
<release>-<part>; labels follow the Kubernetes recommended set, plus
app.kubernetes.io/component = the service, which Services, PDBs and NetworkPolicies select on.
*/}}

{{- define "faultline.labels" -}}
app.kubernetes.io/name: faultline
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* Selector labels of one service's pods: (dict "root" $ "service" "orders") */}}
{{- define "faultline.selector" -}}
app.kubernetes.io/name: faultline
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service }}
{{- end }}

{{- define "faultline.image" -}}
{{- $repository := required "image.repository is required: the faultline image built from deploy/Dockerfile" .Values.image.repository -}}
{{ $repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* host:port of Kafka: Strimzi's bootstrap Service, or the external cluster's. */}}
{{- define "faultline.kafkaBootstrap" -}}
{{- if .Values.kafka.external.enabled -}}
{{ required "kafka.external.bootstrapServers is required when kafka.external.enabled is true (host:port of the external cluster)" .Values.kafka.external.bootstrapServers }}
{{- else -}}
{{ .Values.kafka.name }}-kafka-bootstrap:9092
{{- end }}
{{- end }}

{{/* The Secret holding jwt-secret. */}}
{{- define "faultline.secretName" -}}
{{- if .Values.secrets.create -}}
{{ .Release.Name }}-secrets
{{- else -}}
{{ required "secrets.existingSecret is required when secrets.create is false (a Secret with key jwt-secret)" .Values.secrets.existingSecret }}
{{- end }}
{{- end }}

{{/* The basic-auth Secret of one service's database role: (dict "root" $ "service" "orders") */}}
{{- define "faultline.dbSecretName" -}}
{{ .root.Release.Name }}-db-{{ .service }}
{{- end }}

{{/* Services that consume Kafka: KEDA scales them on their consumer group's lag. */}}
{{- define "faultline.scaledByKeda" -}}
{{- if and .root.Values.keda.enabled .config.kafka .config.kafka.group -}}true{{- end -}}
{{- end }}
