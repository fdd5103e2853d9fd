{{/* Names, labels and the few computed values every template shares. */}}

{{- define "shoal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name: "<release>-shoal", or the release name alone when it already contains the chart name. */}}
{{- define "shoal.fullname" -}}
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

{{- define "shoal.operatorName" -}}
{{- printf "%s-operator" (include "shoal.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shoal.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: shoal
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of the operator pods; never change them across upgrades (Deployment selectors are immutable). */}}
{{- define "shoal.operatorSelectorLabels" -}}
app.kubernetes.io/name: shoal-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* shoal.labels already carries app.kubernetes.io/instance, the other selector label. */}}
{{- define "shoal.operatorLabels" -}}
{{ include "shoal.labels" . }}
app.kubernetes.io/name: shoal-operator
app.kubernetes.io/component: operator
{{- end }}

{{- define "shoal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shoal.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name an existing ServiceAccount" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "registry/repository:tag", the tag defaulting to the chart's appVersion; a digest pins it exactly. */}}
{{- define "shoal.image" -}}
{{- $ref := .image.repository }}
{{- if .image.registry }}{{ $ref = printf "%s/%s" .image.registry .image.repository }}{{ end }}
{{- if .image.digest }}
{{- printf "%s@%s" $ref .image.digest }}
{{- else }}
{{- printf "%s:%s" $ref (default .appVersion .image.tag) }}
{{- end }}
{{- end }}

{{- define "shoal.operatorImage" -}}
{{- include "shoal.image" (dict "image" .Values.operator.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{- define "shoal.engineImage" -}}
{{- include "shoal.image" (dict "image" .Values.engine.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{/* Arguments of `shoal operator`: the namespaces to watch, where Prometheus is, the default engine image. */}}
{{- define "shoal.operatorArgs" -}}
- operator
{{- if .Values.operator.watchNamespaces }}
{{- range .Values.operator.watchNamespaces }}
- {{ printf "--namespace=%s" . | quote }}
{{- end }}
{{- else }}
- --all-namespaces
{{- end }}
{{- with .Values.operator.prometheusUrl }}
- {{ printf "--prometheus-url=%s" . | quote }}
{{- end }}
- {{ printf "--engine-image=%s" (include "shoal.engineImage" .) | quote }}
- {{ printf "--peering=%s" (include "shoal.fullname" .) | quote }}
- {{ printf "--liveness-port=%v" .Values.operator.healthPort | quote }}
- {{ printf "--metrics-port=%v" .Values.operator.metricsPort | quote }}
{{- range .Values.operator.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
