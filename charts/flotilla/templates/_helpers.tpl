{{/*
Names, labels and the addresses components use to find each other.
*/}}

{{/* The chart name (nameOverride wins). */}}
{{- define "flotilla.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every resource name: <release>-<chart>, or the release alone when it
already contains the chart name. Kept short: component suffixes go after it. */}}
{{- define "flotilla.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "flotilla.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "flotilla.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flotilla
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "agent"). */}}
{{- define "flotilla.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flotilla.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of one component. */}}
{{- define "flotilla.componentLabels" -}}
{{ include "flotilla.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The Flotilla image reference. */}}
{{- define "flotilla.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The ServiceAccount of one component: include with (dict "ctx" $ "component" "agent"). */}}
{{- define "flotilla.serviceAccountName" -}}
{{- if .ctx.Values.serviceAccount.create -}}
{{- printf "%s-%s" (include "flotilla.fullname" .ctx) .component -}}
{{- else -}}
default
{{- end -}}
{{- end -}}

{{/* Resource names of the components. */}}
{{- define "flotilla.cp.name" -}}{{ include "flotilla.fullname" . }}-control-plane{{- end -}}
{{- define "flotilla.cp.headless" -}}{{ include "flotilla.fullname" . }}-control-plane-headless{{- end -}}
{{- define "flotilla.agent.name" -}}{{ include "flotilla.fullname" . }}-agent{{- end -}}
{{- define "flotilla.etcd.name" -}}{{ include "flotilla.fullname" . }}-etcd{{- end -}}
{{- define "flotilla.etcd.headless" -}}{{ include "flotilla.fullname" . }}-etcd-headless{{- end -}}

{{/* The API address inside the cluster (the CLI, the test). */}}
{{- define "flotilla.cp.address" -}}
{{- printf "%s.%s.svc:%d" (include "flotilla.cp.name" .) .Release.Namespace (int .Values.controlPlane.port) -}}
{{- end -}}

{{/* The agents' control-plane address: the headless Service, whose DNS name resolves to
every replica, so an agent fails over between them on its own. */}}
{{- define "flotilla.cp.agentAddress" -}}
{{- printf "%s.%s.svc:%d" (include "flotilla.cp.headless" .) .Release.Namespace (int .Values.controlPlane.port) -}}
{{- end -}}

{{/* Whether the chart runs its own etcd. */}}
{{- define "flotilla.etcd.bundled" -}}
{{- if and (eq .Values.controlPlane.store "etcd") (empty .Values.etcd.external.endpoints) -}}true{{- end -}}
{{- end -}}

{{/* The etcd endpoints flotilla-cp is given (comma-separated). */}}
{{- define "flotilla.etcd.endpoints" -}}
{{- if .Values.etcd.external.endpoints -}}
{{- join "," .Values.etcd.external.endpoints -}}
{{- else -}}
{{- $eps := list -}}
{{- range $i := until (int .Values.etcd.replicas) -}}
{{- $eps = append $eps (printf "http://%s-%d.%s.%s.svc:2379" (include "flotilla.etcd.name" $) $i (include "flotilla.etcd.headless" $) $.Release.Namespace) -}}
{{- end -}}
{{- join "," $eps -}}
{{- end -}}
{{- end -}}

{{/* The etcd --initial-cluster of the bundled StatefulSet. */}}
{{- define "flotilla.etcd.initialCluster" -}}
{{- $members := list -}}
{{- range $i := until (int .Values.etcd.replicas) -}}
{{- $n := printf "%s-%d" (include "flotilla.etcd.name" $) $i -}}
{{- $members = append $members (printf "%s=http://%s.%s.%s.svc:2380" $n $n (include "flotilla.etcd.headless" $) $.Release.Namespace) -}}
{{- end -}}
{{- join "," $members -}}
{{- end -}}

{{/* The agent's --labels value: k=v,k2=v2, sorted. */}}
{{- define "flotilla.agent.labels" -}}
{{- $pairs := list -}}
{{- range $k, $v := .Values.agent.labels -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/* Preferred spreading of one component's pods over nodes, when no affinity is given. */}}
{{- define "flotilla.softAntiAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "flotilla.selectorLabels" . | nindent 12 }}
{{- end -}}

{{/* The certificate Secret (and token Secret) mounted read-only; not subPath, so updates
reach the files and the binaries reload them. Empty when TLS is off. */}}
{{- define "flotilla.tls.mounts" -}}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/flotilla/tls
  readOnly: true
{{- if .Values.tls.tokensSecretName }}
- name: tokens
  mountPath: /etc/flotilla/tokens
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "flotilla.tls.volumes" -}}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
    defaultMode: 0440
{{- if .Values.tls.tokensSecretName }}
- name: tokens
  secret:
    secretName: {{ .Values.tls.tokensSecretName }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- end }}
