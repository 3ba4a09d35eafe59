// The sockdiag_exporter monitoring mixin: grafanaDashboards, prometheusRules (recording rules and the alert
// thresholds) and prometheusAlerts, configured by _config (config.libsonnet). deploy/mixin/render.py renders it
// into the files the project ships: deploy/prometheus/rules.yml and alerts.yml, grafana/dashboards/*.json.
(import 'config.libsonnet') +
(import 'rules.libsonnet') +
(import 'alerts.libsonnet') +
(import 'dashboards.libsonnet')
