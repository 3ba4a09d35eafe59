// The Grafana dashboards, as grafana/generate.py writes them with Grafana's foundation SDK into dashboards/.
{
  grafanaDashboards+:: {
    'sockdiag-overview.json': (import 'dashboards/sockdiag-overview.json'),
    'sockdiag-listeners.json': (import 'dashboards/sockdiag-listeners.json'),
  },
}
