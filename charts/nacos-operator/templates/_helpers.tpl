{{/*
Name of the chart, overridable with nameOverride.
*/}}
{{- define "nacos-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name: RELEASE-NAME, or RELEASE when it already contains the name.
Kept to 52 characters so "-webhook" still fits a 63-character Service name.
*/}}
{{- define "nacos-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The webhook Service's name; the operator makes its certificate for NAME.NAMESPACE.svc.
*/}}
{{- define "nacos-operator.webhookService" -}}
{{- printf "%s-webhook" (include "nacos-operator.fullname" .) }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "nacos-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "nacos-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels selecting the operator pod.
*/}}
{{- define "nacos-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nacos-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "nacos-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nacos-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}
