{{/* The components, each a Deployment running `credits run <name>`. */}}
{{- define "credits.components" -}}
ledger relay projector scheduler payments api
{{- end -}}

{{/* Settings that are secrets: only ever in a Secret, never in `config` (a ConfigMap). */}}
{{- define "credits.secretNames" -}}
CREDITS_PG_PASSWORD CREDITS_STRIPE_API_KEY CREDITS_STRIPE_WEBHOOK_SECRETS CREDITS_PORTAL_TOKEN_SECRETS CREDITS_KAFKA_SASL_PASSWORD CREDITS_KAFKA_SSL_KEY_PASSWORD
{{- end -}}

{{/* Set by the chart: a value for them in `config` would be overridden, so it is refused. */}}
{{- define "credits.chartSetNames" -}}
CREDITS_OPS_HOST CREDITS_OPS_PORT CREDITS_HTTP_HOST CREDITS_HTTP_PORT CREDITS_CATALOG_PATH CREDITS_API_INSTANCE_ID CREDITS_LEDGER_INSTANCE_ID
{{- end -}}

{{- define "credits.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "credits.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selects one component's pods: call with (dict "root" $ "component" name). */}}
{{- define "credits.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "credits.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "credits.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "credits.fullname" .)) -}}
{{- end -}}

{{- define "credits.catalogDir" -}}
/etc/credits/catalog
{{- end -}}

{{- define "credits.kafkaTlsDir" -}}
/etc/credits/kafka-tls
{{- end -}}

{{/* Refuses values that would put a secret in a ConfigMap or a setting where the chart's wins. */}}
{{- define "credits.validate" -}}
{{- $secretNames := splitList " " (include "credits.secretNames" .) -}}
{{- $chartSet := splitList " " (include "credits.chartSetNames" .) -}}
{{- range $name, $_ := .Values.config -}}
{{- if has $name $secretNames -}}
{{- fail (printf "config.%s is a secret: set secrets.values.%s (or secrets.existingSecret) instead" $name $name) -}}
{{- end -}}
{{- if has $name $chartSet -}}
{{- fail (printf "config.%s is set by the chart (see values.yaml: opsPort, httpPort, catalog, api.instanceId)" $name) -}}
{{- end -}}
{{- if not (hasPrefix "CREDITS_" $name) -}}
{{- fail (printf "config.%s: settings are CREDITS_* variables (README, Settings)" $name) -}}
{{- end -}}
{{- end -}}
{{- range $name, $_ := .Values.secrets.values -}}
{{- if not (has $name $secretNames) -}}
{{- fail (printf "secrets.values.%s is not a secret setting; the secret ones: %s" $name (join ", " $secretNames)) -}}
{{- end -}}
{{- end -}}
{{- $partitions := int (.Values.config.CREDITS_TOPIC_PARTITIONS | default 4) -}}
{{- range $name := list "ledger" "payments" -}}
{{- $replicas := int (index $.Values.components $name).replicas -}}
{{- if gt $replicas $partitions -}}
{{- fail (printf "components.%s.replicas (%d) exceeds CREDITS_TOPIC_PARTITIONS (%d): the extra consumers would get no partition" $name $replicas $partitions) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.catalog.toml -}}
{{- fail "catalog.toml is required: --set-file catalog.toml=path/to/catalog.toml" -}}
{{- end -}}
{{- end -}}

{{/* The pod's environment: the settings ConfigMap and the Secret. */}}
{{- define "credits.envFrom" -}}
- configMapRef:
    name: {{ include "credits.fullname" . }}-settings
- secretRef:
    name: {{ include "credits.secretName" . }}
{{- end -}}
