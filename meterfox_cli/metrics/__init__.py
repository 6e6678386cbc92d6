"""Metrics of finished requests for the tools teams already watch: Prometheus (prometheus) and
OpenTelemetry's GenAI conventions (otel, semconv). Both are `store.observers.RecordObserver`s:
they see what the writer commits, on its thread, never the proxy's hot path."""
