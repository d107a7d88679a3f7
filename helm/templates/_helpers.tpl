{{/* Labels every object of ours carries (app.kubernetes.io/part-of selects them in policies). */}}
{{- define "medai.labels" -}}
app.kubernetes.io/part-of: medai
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "medai.image" -}}
{{ .Values.medai.image.name }}:{{ .Values.medai.image.tag }}
{{- end }}

{{- define "medai.stateClaim" -}}
{{ .Values.medai.storage.state.existingClaim | default "medai-state" }}
{{- end }}

{{/* The restricted pod and container security contexts of every course service. */}}
{{- define "medai.podSecurity" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 100
fsGroup: 100
seccompProfile:
  type: RuntimeDefault
{{- end }}
{{- define "medai.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* Environment a JupyterHub service expects when the hub does not start it itself. */}}
{{- define "medai.serviceEnv" -}}
{{- $name := index . 0 }}{{- $port := index . 1 }}{{- $public := index . 2 }}
{{- with $public.hub }}
- name: JUPYTERHUB_HOST
  value: {{ . | quote }}
- name: JUPYTERHUB_PUBLIC_HUB_URL
  value: "{{ . }}/hub/"
{{- end }}
{{- with index $public.services $name }}
- name: JUPYTERHUB_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
- name: JUPYTERHUB_SERVICE_NAME
  value: {{ $name | quote }}
- name: JUPYTERHUB_SERVICE_URL
  value: "http://0.0.0.0:{{ $port }}"
- name: JUPYTERHUB_SERVICE_PREFIX
  value: "/services/{{ $name }}/"
- name: JUPYTERHUB_API_URL
  value: "http://hub:8081/hub/api"
- name: JUPYTERHUB_BASE_URL
  value: "/"
- name: JUPYTERHUB_CLIENT_ID
  value: "service-{{ $name }}"
- name: JUPYTERHUB_OAUTH_CALLBACK_URL
  value: "/services/{{ $name }}/oauth_callback"
- name: JUPYTERHUB_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: hub
      key: "hub.services.{{ $name }}.apiToken"
{{- end }}
