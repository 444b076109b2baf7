{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "earlykill.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; room is left for the -processor suffix. */}}
{{- define "earlykill.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else if contains (include "earlykill.name" .) .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "earlykill.name" .) | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "earlykill.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "earlykill.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component (processor, projector, migrate). */}}
{{- define "earlykill.selectorLabels" -}}
app.kubernetes.io/name: {{ include "earlykill.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "earlykill.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* True (non-empty) when a database is configured. */}}
{{- define "earlykill.hasDatabase" -}}
{{- if or .Values.database.url .Values.database.existingSecret }}true{{ end }}
{{- end }}

{{/* The chart's own Secret, when it has anything to hold. */}}
{{- define "earlykill.secretName" -}}
{{- printf "%s-secret" (include "earlykill.fullname" .) }}
{{- end }}

{{/* Environment shared by the processor and the projector: the ConfigMap,
     then the secrets, each from the chart's Secret or an existing one. */}}
{{- define "earlykill.env" -}}
{{- if include "earlykill.hasDatabase" . }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret | default (include "earlykill.secretName" .) }}
      key: {{ ternary .Values.database.existingSecretKey "DATABASE_URL" (not (empty .Values.database.existingSecret)) }}
{{- end }}
{{- /* Always set: the chart's Secret holds the given or a generated token. */}}
- name: EARLYKILL_HTTP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.http.existingSecret | default (include "earlykill.secretName" .) }}
      key: {{ ternary .Values.http.existingSecretKey "EARLYKILL_HTTP_TOKEN" (not (empty .Values.http.existingSecret)) }}
{{- end }}

{{- define "earlykill.envFrom" -}}
- configMapRef:
    name: {{ include "earlykill.fullname" . }}
{{- if .Values.kafka.secretProperties }}
- secretRef:
    name: {{ include "earlykill.secretName" . }}-kafka
{{- end }}
{{- if .Values.kafka.existingSecret }}
- secretRef:
    name: {{ .Values.kafka.existingSecret }}
{{- end }}
{{- end }}

{{/* librdkafka property name -> EARLYKILL_RDKAFKA_* variable. */}}
{{- define "earlykill.rdkafkaEnv" -}}
{{- printf "EARLYKILL_RDKAFKA_%s" (. | replace "." "_" | upper) }}
{{- end }}

{{/* True when a prometheus-operator CRD may be used. */}}
{{- define "earlykill.hasCrd" -}}
{{- if or .root.Values.monitoring.skipCrdCheck (.root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" .kind)) }}true{{ end }}
{{- end }}

{{/*
The first service's values (performanceMonitor.*) work as it wrote them:
killThreshold, minInteractions, timeoutMinutes and logLevel (its INFO,
WARNING, CRITICAL included) set the same settings as rule.* and logLevel,
and resources the processor's. Only enabled: false has no meaning here.
*/}}
{{- define "earlykill.seedValuesCheck" -}}
{{- with .Values.performanceMonitor }}
{{- if and (hasKey . "enabled") (not .enabled) }}
{{- fail "performanceMonitor.enabled: false: this chart is earlykill itself; to leave it out, leave the chart out (or give it a condition in your umbrella chart's dependencies). performanceMonitor.killThreshold, minInteractions, timeoutMinutes, logLevel and resources are read as rule.*, logLevel and processor.resources" }}
{{- end }}
{{- end }}
{{- end }}
