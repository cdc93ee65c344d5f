"""What operators see: the HTTP endpoints, the Prometheus metrics, the status view, and the log
lines and metrics each fact becomes."""
