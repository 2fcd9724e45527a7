{{/* Names, labels, the checks of combined values and the derived settings of the maestro-server chart. */}}

{{- define "maestro-server.name" -}}
{{- default "maestro" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-maestro", or the release name when it already contains "maestro" (release "maestro" gives
upstream's names: maestro, maestro-grpc, maestro-mqtt, ...). */}}
{{- define "maestro-server.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := include "maestro-server.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels of one component (server, postgresql, mqtt): call with (list $ "component"). */}}
{{- define "maestro-server.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "maestro-server.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* All labels of one component: call with (list $ "component"). */}}
{{- define "maestro-server.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "maestro-server.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: maestro
{{- end }}

{{- define "maestro-server.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "maestro-server.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "maestro-server.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Combinations the schema cannot express; included by the hub's Deployment, so every render checks them. */}}
{{- define "maestro-server.validate" -}}
{{- $db := .Values.database }}
{{- $mqtt := .Values.messageBroker.mqtt }}
{{- $given := 0 }}
{{- if $db.url }}{{ $given = add1 $given }}{{ end }}
{{- if $db.host }}{{ $given = add1 $given }}{{ end }}
{{- if $db.existingSecret }}{{ $given = add1 $given }}{{ end }}
{{- if .Values.postgresql.enabled }}
{{- if gt $given 0 }}
{{- fail "postgresql.enabled runs the development PostgreSQL: leave database.url, database.host and database.existingSecret empty" }}
{{- end }}
{{- else if eq $given 0 }}
{{- fail "no database: set database.url, database.host (with user, password and name) or database.existingSecret, or postgresql.enabled=true (development only)" }}
{{- else if gt $given 1 }}
{{- fail "database: set only one of database.url, database.host and database.existingSecret" }}
{{- end }}
{{- if and $db.existingSecretUrlKey (not $db.existingSecret) }}
{{- fail "database.existingSecretUrlKey is set but database.existingSecret is not" }}
{{- end }}
{{- if .Values.mosquitto.enabled }}
{{- if or $mqtt.host $mqtt.existingSecret $mqtt.username (ne (int $mqtt.port) 1883) }}
{{- fail "mosquitto.enabled connects the hub to the chart's broker as user maestro: leave messageBroker.mqtt.host, port, username and existingSecret at their defaults" }}
{{- end }}
{{- if and .Values.mosquitto.existingSecret (not $mqtt.password) }}
{{- fail "mosquitto.existingSecret is set: give the hub's password (that Secret's \"maestro\" key) in messageBroker.mqtt.password too" }}
{{- end }}
{{- if and (not (contains "+" (include "maestro-server.sourceEventsTopic" .))) (not (contains "+" (include "maestro-server.agentEventsTopic" .))) }}
{{- fail "mosquitto.enabled: the topics must have a + for the consumer, from which the agents' ACL is derived" }}
{{- end }}
{{- else }}
{{- if .Values.mosquitto.agents }}
{{- fail "mosquitto.agents is set but mosquitto.enabled is false" }}
{{- end }}
{{- if and (not $mqtt.host) (not $mqtt.existingSecret) }}
{{- fail "no MQTT broker: set messageBroker.mqtt.host or messageBroker.mqtt.existingSecret, or mosquitto.enabled=true (development only)" }}
{{- end }}
{{- end }}
{{- if and .Values.server.grpc.tls.existingSecret (not .Values.server.grpc.enabled) }}
{{- fail "server.grpc.tls.existingSecret is set but server.grpc.enabled is false" }}
{{- end }}
{{- $jwks := or .Values.auth.jwkCertUrl .Values.auth.jwksConfigMap }}
{{- if and .Values.auth.jwkCertUrl .Values.auth.jwksConfigMap }}
{{- fail "auth: set jwkCertUrl or jwksConfigMap, not both" }}
{{- end }}
{{- if and $jwks .Values.auth.disabled }}
{{- fail "auth.disabled is true but a JWKS is configured: choose one" }}
{{- end }}
{{- /* NB: the hub itself refuses to serve a non-loopback address without either (it would crash-loop). */}}
{{- if and (not $jwks) (not .Values.auth.disabled) (not (has .Values.server.bindAddress (list "127.0.0.1" "::1" "localhost"))) }}
{{- fail "no authentication: set auth.jwkCertUrl or auth.jwksConfigMap, or auth.disabled=true (development only: every request is accepted)" }}
{{- end }}
{{- end }}

{{/* A password kept across upgrades: the live Secret's value when there is one (lookup; nothing under
`helm template` or --dry-run), else a new random one. Cached in .Values so that every template of one render
sees the same value. Call with (list $ "secret name" "key"). */}}
{{- define "maestro-server.keptPassword" -}}
{{- $root := index . 0 }}
{{- $secretName := index . 1 }}
{{- $key := index . 2 }}
{{- $cacheKey := printf "%s/%s" $secretName $key }}
{{- if not (hasKey $root.Values "_maestroGenerated") }}
{{- $_ := set $root.Values "_maestroGenerated" dict }}
{{- end }}
{{- $cache := $root.Values._maestroGenerated }}
{{- if not (hasKey $cache $cacheKey) }}
{{- $live := lookup "v1" "Secret" $root.Release.Namespace $secretName | default dict }}
{{- $data := get $live "data" | default dict }}
{{- if hasKey $data $key }}
{{- $_ := set $cache $cacheKey (index $data $key | b64dec) }}
{{- else }}
{{- $_ := set $cache $cacheKey (randAlphaNum 32) }}
{{- end }}
{{- end }}
{{- index $cache $cacheKey }}
{{- end }}

{{/* -- database ------------------------------------------------------------------------------------------ */}}

{{- define "maestro-server.dbSecretName" -}}
{{- default (printf "%s-db" (include "maestro-server.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{/* The key holding a whole URL, or "" when the Secret has the five keys db.host ... db.name. */}}
{{- define "maestro-server.dbUrlKey" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecretUrlKey }}
{{- else if .Values.database.url }}
{{- "db.url" }}
{{- end }}
{{- end }}

{{- define "maestro-server.dbPassword" -}}
{{- if .Values.database.password }}
{{- .Values.database.password }}
{{- else if .Values.postgresql.enabled }}
{{- include "maestro-server.keptPassword" (list . (include "maestro-server.dbSecretName" .) "db.password") }}
{{- end }}
{{- end }}

{{/* The Secret's content when the chart writes it. */}}
{{- define "maestro-server.dbSecretData" -}}
{{- if .Values.database.url -}}
db.url: {{ .Values.database.url | quote }}
{{- else -}}
db.host: {{ ternary (printf "%s-postgresql" (include "maestro-server.fullname" .)) .Values.database.host .Values.postgresql.enabled | quote }}
db.port: {{ ternary 5432 (int .Values.database.port) .Values.postgresql.enabled | toString | quote }}
db.user: {{ .Values.database.user | quote }}
db.password: {{ include "maestro-server.dbPassword" . | quote }}
db.name: {{ .Values.database.name | quote }}
{{- end }}
{{- end }}

{{/* The database settings of `maestro migration` and `maestro server`: MAESTRO_DB_URL plus libpq's variables.
Kubernetes expands $(VAR) from the variables defined before it in the same list. */}}
{{- define "maestro-server.dbEnv" -}}
{{- $secret := include "maestro-server.dbSecretName" . }}
{{- $urlKey := include "maestro-server.dbUrlKey" . }}
{{- if $urlKey }}
- name: MAESTRO_DB_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $urlKey }}
{{- else }}
{{- range $var, $key := dict "DB_HOST" "db.host" "DB_PORT" "db.port" "DB_NAME" "db.name" "PGUSER" "db.user" "PGPASSWORD" "db.password" }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}
# No user or password in the URL: PGUSER and PGPASSWORD carry them, so they need no percent-encoding.
- name: MAESTRO_DB_URL
  value: postgresql://$(DB_HOST):$(DB_PORT)/$(DB_NAME)
{{- end }}
# NB: the hub's pool ignores a sslmode in the URL; libpq's variable reaches every connection.
- name: PGSSLMODE
  value: {{ .Values.database.sslMode | quote }}
{{- if .Values.database.caSecret }}
- name: PGSSLROOTCERT
  value: /secrets/db-ca/{{ .Values.database.caKey }}
{{- end }}
{{- end }}

{{/* -- MQTT ---------------------------------------------------------------------------------------------- */}}

{{/* The hub's broker config Secret: the user's existingSecret or the one this chart writes. */}}
{{- define "maestro-server.brokerSecretName" -}}
{{- default (printf "%s-mqtt" (include "maestro-server.fullname" .)) .Values.messageBroker.mqtt.existingSecret }}
{{- end }}

{{- define "maestro-server.mosquittoUsersSecretName" -}}
{{- default (printf "%s-mqtt-users" (include "maestro-server.fullname" .)) .Values.mosquitto.existingSecret }}
{{- end }}

{{- define "maestro-server.sourceEventsTopic" -}}
{{- default (printf "sources/%s/consumers/+/sourceevents" .Values.sourceId) .Values.messageBroker.mqtt.topics.sourceEvents }}
{{- end }}

{{- define "maestro-server.agentEventsTopic" -}}
{{- $topic := printf "sources/%s/consumers/+/agentevents" .Values.sourceId }}
{{- if eq .Values.subscriptionType "shared" }}
{{- $topic = printf "$share/statussubscribers/%s" $topic }}
{{- end }}
{{- default $topic .Values.messageBroker.mqtt.topics.agentEvents }}
{{- end }}

{{/* The hub's user name and password on the broker. */}}
{{- define "maestro-server.mqttUsername" -}}
{{- if .Values.mosquitto.enabled }}maestro{{ else }}{{ .Values.messageBroker.mqtt.username }}{{ end }}
{{- end }}

{{- define "maestro-server.mqttPassword" -}}
{{- if .Values.messageBroker.mqtt.password }}
{{- .Values.messageBroker.mqtt.password }}
{{- else if .Values.mosquitto.enabled }}
{{- include "maestro-server.keptPassword" (list . (include "maestro-server.mosquittoUsersSecretName" .) "maestro") }}
{{- end }}
{{- end }}

{{/* The hub's broker config in upstream's MQTT format (read by protocol/mqtt_config.py). */}}
{{- define "maestro-server.brokerConfig" -}}
{{- $mqtt := .Values.messageBroker.mqtt }}
{{- $host := ternary (printf "%s-mqtt" (include "maestro-server.fullname" .)) $mqtt.host .Values.mosquitto.enabled }}
{{- $config := dict "brokerHost" (printf "%s:%d" $host (int $mqtt.port)) "protocolVersion" (int $mqtt.protocolVersion) "keepAlive" (int $mqtt.keepAlive) }}
{{- with include "maestro-server.mqttUsername" . }}{{ $_ := set $config "username" . }}{{ end }}
{{- with include "maestro-server.mqttPassword" . }}{{ $_ := set $config "password" . }}{{ end }}
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
{{- $_ := set $config "topics" (dict "sourceEvents" (include "maestro-server.sourceEventsTopic" .) "agentEvents" (include "maestro-server.agentEventsTopic" .)) }}
{{- toYaml $config }}
{{- end }}

{{/* -- the development Mosquitto ------------------------------------------------------------------------- */}}

{{/* The broker's users: the hub, then every agent. */}}
{{- define "maestro-server.mosquittoUsers" -}}
{{- toJson (prepend (.Values.mosquitto.agents | default list) "maestro") }}
{{- end }}

{{- define "maestro-server.mosquittoConf" -}}
# The development broker of the maestro-server chart: one pod, no TLS, state in an emptyDir. Not for production.
listener 1883
allow_anonymous false
password_file /mosquitto/auth/passwd
acl_file /mosquitto/config/acl
persistence true
persistence_location /mosquitto/data/
log_dest stdout
log_type error
log_type warning
log_type notice
max_queued_messages 10000
{{- end }}

{{/* The ACL, derived from the hub's topics: the consumer's "+" becomes each agent's name. Mosquitto checks
reads when it delivers a message, so an agent that subscribes to another consumer's topic receives nothing. */}}
{{- define "maestro-server.mosquittoAcl" -}}
{{- $spec := regexReplaceAll "^\\$share/[^/]+/" (include "maestro-server.sourceEventsTopic" .) "" }}
{{- $status := regexReplaceAll "^\\$share/[^/]+/" (include "maestro-server.agentEventsTopic" .) "" -}}
# Generated by the maestro-server chart from mosquitto.agents. Everything not granted here is denied.

# The hub: publishes every consumer's spec events, receives every consumer's status events.
user maestro
topic write {{ $spec }}
topic read {{ $status }}
{{- range .Values.mosquitto.agents }}

# Agent {{ . }}: its own spec events in, its own status events out.
user {{ . }}
topic read {{ replace "+" . $spec }}
topic write {{ replace "+" . $status }}
{{- end }}
{{- end }}

{{/* The init container's script: a password file hashed by mosquitto_passwd from the users Secret (one key per
user, mounted at /users). -b takes any password; -U would cut one at its first ":". */}}
{{- define "maestro-server.mosquittoPasswdScript" -}}
set -eu
umask 077
: > /mosquitto/auth/passwd
for user in {{ include "maestro-server.mosquittoUsers" . | fromJsonArray | join " " }}; do
  if [ ! -f "/users/$user" ]; then
    echo "Secret {{ include "maestro-server.mosquittoUsersSecretName" . }} has no key $user" >&2
    exit 1
  fi
  mosquitto_passwd -b /mosquitto/auth/passwd "$user" "$(cat "/users/$user")"
done
echo "password file written for: $(cut -d: -f1 /mosquitto/auth/passwd | tr '\n' ' ')"
{{- end }}
