"""The Pulumi program: the city platform of one environment (``city_platform.build``), its
components, the Kubernetes names they share and the daemon configurations they render."""
