{{/* The operator's Deployment, Service, ServiceAccount, Role and RoleBinding. */}}
{{- define "ballast.name" -}}{{ .Values.fullnameOverride | default "ballast-operator" }}{{- end -}}

{{/* A pod's labels: podLabels, then `selector` (a YAML string) over them, so the Deployment keeps its pods. */}}
{{- define "ballast.podLabels" -}}
{{- toYaml (merge (fromYaml .selector) (deepCopy .root.Values.podLabels)) -}}
{{- end -}}

{{/* A pod's annotations: podAnnotations, then `annotations` (a dict) over them. */}}
{{- define "ballast.podAnnotations" -}}
{{- toYaml (merge .annotations (deepCopy .root.Values.podAnnotations)) -}}
{{- end -}}

{{/* imagePullSecrets and priorityClassName, for the operator's pod and serve's. */}}
{{- define "ballast.podScheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "ballast.labels" -}}
app.kubernetes.io/name: ballast
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* The chart's labels and monitoring.labels (e.g. release: kube-prometheus-stack, which the stack selects by). */}}
{{- define "ballast.monitoringLabels" -}}
{{ include "ballast.labels" . }}
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "ballast.selector" -}}
app.kubernetes.io/name: ballast
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The namespaces the operator reconciles: the listed ones, or the release's own. */}}
{{- define "ballast.namespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- join "," .Values.watchNamespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* NetworkPolicy egress rules: DNS, and TCP to the given CIDRs (any address when none) on the given ports. */}}
{{- define "ballast.dnsEgress" -}}
- to:
    - namespaceSelector: {}
      podSelector: {matchLabels: {k8s-app: kube-dns}}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end }}
{{- define "ballast.storeEgress" -}}
- {{- if .cidrs }}
  to:
    {{- range .cidrs }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  {{- end }}
  ports:
    {{- range .ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end }}

{{/* Where `ballast serve` runs: serve.namespace, or the first watched namespace, or the release's own.
It must be one the operator reconciles: only a ModelRelease in its own namespace can move it, and the
operator's Role (its `patch` on Deployments) exists only there. */}}
{{- define "ballast.serveNamespace" -}}
{{- $ns := .Values.serve.namespace | default (first .Values.watchNamespaces) | default .Release.Namespace -}}
{{- $watched := splitList "," (include "ballast.namespaces" .) -}}
{{- if not (has $ns $watched) -}}
{{- $which := ternary "watchNamespaces" "the release's namespace, as watchNamespaces is empty" (not (empty .Values.watchNamespaces)) -}}
{{- fail (printf "serve.namespace %q is not a namespace the operator watches (%s: %s): no ModelRelease could move the serve Deployment there; set serve.namespace to a watched namespace, or add it to watchNamespaces" $ns $which (join ", " $watched)) -}}
{{- end -}}
{{- $ns -}}
{{- end -}}
