"""telemetry-ingest: MQTT telemetry from every broker pod -> TimescaleDB hypertable (COPY,
idempotent), archived hourly to the ``telemetry-archive`` bucket."""
