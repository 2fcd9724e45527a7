{{/* Names, labels and the derived broker settings of the maestro-agent chart. */}}

{{- define "maestro-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-maestro-agent", or the release name when it already contains the chart's name. */}}
{{- define "maestro-agent.fullname" -}}
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

{{- define "maestro-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "maestro-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "maestro-agent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "maestro-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: agent
maestro-py.io/consumer: {{ .Values.consumerName | quote }}
{{- end }}

{{- define "maestro-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "maestro-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "maestro-agent.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "maestro-agent.clientId" -}}
{{- default (printf "%s-work-agent" .Values.consumerName) .Values.cloudeventsClientId }}
{{- end }}

{{/* The broker config Secret: the user's existingSecret or the one this chart writes. */}}
{{- define "maestro-agent.brokerSecretName" -}}
{{- default (printf "%s-mqtt" (include "maestro-agent.fullname" .)) .Values.messageBroker.mqtt.existingSecret }}
{{- end }}

{{- define "maestro-agent.sourceEventsTopic" -}}
{{- default (printf "sources/%s/consumers/%s/sourceevents" .Values.sourceId .Values.consumerName) .Values.messageBroker.mqtt.topics.sourceEvents }}
{{- end }}

{{- define "maestro-agent.agentEventsTopic" -}}
{{- default (printf "sources/%s/consumers/%s/agentevents" .Values.sourceId .Values.consumerName) .Values.messageBroker.mqtt.topics.agentEvents }}
{{- end }}

{{/* The broker config in upstream's MQTT format (read by protocol/mqtt_config.py). */}}
{{- define "maestro-agent.brokerConfig" -}}
{{- $mqtt := .Values.messageBroker.mqtt }}
{{- $config := dict "brokerHost" (printf "%s:%d" $mqtt.host (int $mqtt.port)) "protocolVersion" (int $mqtt.protocolVersion) "keepAlive" (int $mqtt.keepAlive) }}
{{- with $mqtt.username }}{{ $_ := set $config "username" . }}{{ end }}
{{- with $mqtt.password }}{{ $_ := set $config "password" . }}{{ end }}
{{- if $mqtt.existingTlsSecret }}
{{- if and (not $mqtt.tlsKeys.ca) (not $mqtt.tlsKeys.cert) }}
{{- fail "messageBroker.mqtt.existingTlsSecret is set but tlsKeys names neither a CA (ca) nor a client certificate (cert)" }}
{{- end }}
{{- if ne (empty $mqtt.tlsKeys.cert) (empty $mqtt.tlsKeys.key) }}
{{- fail "messageBroker.mqtt.tlsKeys: cert and key go together" }}
{{- end }}
{{- with $mqtt.tlsKeys.ca }}{{ $_ := set $config "caFile" (printf "/secrets/mqtt-tls/%s" .) }}{{ end }}
{{- with $mqtt.tlsKeys.cert }}{{ $_ := set $config "clientCertFile" (printf "/secrets/mqtt-tls/%s" .) }}{{ end }}
{{- with $mqtt.tlsKeys.key }}{{ $_ := set $config "clientKeyFile" (printf "/secrets/mqtt-tls/%s" .) }}{{ end }}
{{- end }}
{{- $_ := set $config "topics" (dict "sourceEvents" (include "maestro-agent.sourceEventsTopic" .) "agentEvents" (include "maestro-agent.agentEventsTopic" .)) }}
{{- toYaml $config }}
{{- end }}
