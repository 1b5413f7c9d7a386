{{/* Labels of every object: the component's name, as deploy/ has it, and the chart's. */}}
{{- define "oomwatch.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: oomwatch
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
helm.sh/chart: {{ .root.Chart.Name }}-{{ .root.Chart.Version }}
{{- end }}

{{- define "oomwatch.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{/* The gateway's OTLP endpoint for the agents. */}}
{{- define "oomwatch.otlpEndpoint" -}}
{{- if .Values.agent.otlpEndpoint -}}
{{ .Values.agent.otlpEndpoint }}
{{- else -}}
oomwatch-gateway.{{ .Values.gateway.namespace }}.svc:4317
{{- end -}}
{{- end }}
