{{/*
Bucket boundaries (ms) of the engine's latency histograms. A burn-rate alert counts requests under the SLO threshold
with the bucket whose `le` equals it, so a threshold must be one of these. tests/chart checks them against the
engine's live registry.
*/}}
{{- define "shoal.ttftBucketsMs" -}}
1 5 10 20 40 60 80 100 250 500 750 1000 2500 5000 7500 10000 20000 40000 80000 160000 640000 2560000
{{- end }}
{{- define "shoal.itlBucketsMs" -}}
10 25 50 75 100 150 200 300 400 500 750 1000 2500 5000 7500 10000 20000 40000 80000
{{- end }}

{{/*
Regex matching the `le` label of the bucket at `ms` milliseconds whichever way it was written ("0.5"; "1.0" from
prometheus-client or "1" after Prometheus 3 normalises it). Doubled backslashes: it sits in a PromQL string.
*/}}
{{- define "shoal.leRegex" -}}
{{- $s := toString (divf .ms 1000) }}
{{- if contains "." $s }}
{{- replace "." "\\\\." $s }}
{{- else }}
{{- printf "%s(\\\\.0+)?" $s }}
{{- end }}
{{- end }}

{{/* Fails rendering unless `ms` is one of `buckets`, naming the field and the values allowed. */}}
{{- define "shoal.checkBucket" -}}
{{- $allowed := splitList " " .buckets }}
{{- if not (has (toString .ms) $allowed) }}
{{- fail (printf "%s=%v is not a bucket boundary of the engine's histogram, so no burn-rate alert could count requests under it; use one of: %s" .field .ms .buckets) }}
{{- end }}
{{- end }}

{{/* Error ratio of one SLI over one window: share of requests slower than the threshold. */}}
{{- define "shoal.errorRatio" -}}
(
  1 - sum by (namespace, service) (rate({{ .metric }}_bucket{namespace="{{ .namespace }}", service="{{ .service }}", le=~"{{ include "shoal.leRegex" (dict "ms" .ms) }}"}[{{ .window }}]))
    / sum by (namespace, service) (rate({{ .metric }}_count{namespace="{{ .namespace }}", service="{{ .service }}"}[{{ .window }}]))
)
{{- end }}
