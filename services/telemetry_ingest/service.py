"""The ingest pipeline: broker connections -> validation -> batcher -> ReadingStore; and the
hourly archiver. Started and stopped by the app's lifespan."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service_common import database, storage
from service_common.health import Check
from service_common.mqtt import BrokerConnection, Subscription, client_id, stable_client_id
from telemetry_ingest.archive import Archiver
from telemetry_ingest.batching import Batcher, Pending
from telemetry_ingest.database import ReadingStore
from telemetry_ingest.schema import migrate, require_schema
from telemetry_ingest.settings import SERVICE, IngestSettings
from telemetry_ingest.validation import Reading, Rejected, parse_message

log = logging.getLogger(__name__)


class Metrics:
    """Prometheus counters of the ingest (one registry per service instance)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.received = Counter("ingest_messages_received", "MQTT messages received", registry=self.registry)
        self.rejected = Counter(
            "ingest_messages_rejected", "Messages rejected by validation", ["reason"], registry=self.registry
        )
        self.stored = Counter("ingest_readings_stored", "New readings stored", registry=self.registry)
        self.duplicates = Counter(
            "ingest_readings_duplicate",
            "Readings already stored (redeliveries, re-sends, and those stored by a move's source site)",
            registry=self.registry,
        )
        # A part of the duplicates: during a move, the database took no writes and already held
        # the whole batch (database.py); nonzero on a move's new site while it replicates.
        self.stored_by_source = Counter(
            "ingest_readings_stored_by_source",
            "Readings acknowledged without a write: the database took no writes and its source had stored them",
            registry=self.registry,
        )
        self.flush_seconds = Histogram("ingest_batch_seconds", "Time to store one batch", registry=self.registry)
        self.queued = Gauge("ingest_queue_depth", "Readings waiting for the writer", registry=self.registry)


class IngestService:
    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.received = 0
        self.rejected_by_reason: dict[str, int] = {}
        # Written by every writer thread at once (the batcher's stats have their own lock).
        self.stored_by_source = 0
        self._stored_by_source_lock = threading.Lock()
        self.pool = database.make_pool(
            settings.conninfo(application=SERVICE),
            name=f"{SERVICE}-db",
            # One connection per writer, plus the archiver's and the readiness probe's.
            max_size=settings.writers + 2,
        )
        self.s3: Any = storage.make_client(settings)
        self.store = ReadingStore(self.pool)
        self.batcher: Batcher[Reading] = Batcher(
            self._write,
            max_size=settings.batch_size,
            max_wait_s=settings.batch_max_wait_s,
            queue_size=settings.queue_size,
            # Without MIGRATE_ON_START the release's migration Job owns the schema: wait for it.
            before_first=self._migrate if settings.migrate_on_start else self._require_schema,
            writers=settings.writers,
        )
        self.archiver = Archiver(
            self.pool,
            self.s3,
            settings.archive_bucket,
            interval_s=settings.archive_interval_s,
            grace=timedelta(seconds=settings.archive_grace_s),
            lookback_hours=settings.archive_lookback_hours,
            wait_for=self.batcher.ready,
        )
        subscription = Subscription(settings.subscription_filter(), qos=1)
        self.brokers = [
            BrokerConnection(
                url,
                client_id=stable_client_id(SERVICE, index) if settings.session_expiry_s else client_id(SERVICE, index),
                username=settings.mqtt_username,
                password=settings.mqtt_password.get_secret_value(),
                subscriptions=[subscription],
                handler=self._on_message,
                manual_ack=True,
                receive_maximum=settings.receive_maximum,
                session_expiry_s=settings.session_expiry_s,
            )
            for index, url in enumerate(settings.broker_urls())
        ]

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.batcher.start()
        self.archiver.start()
        for broker in self.brokers:
            broker.start()
        log.info("ingest started", extra={"brokers": [b.name for b in self.brokers]})

    def stop(self) -> None:
        """Graceful: no new deliveries, store and acknowledge what is queued, then disconnect."""
        for broker in self.brokers:
            broker.unsubscribe_all()
        time.sleep(0.2)  # deliveries already on the wire
        drained = self.batcher.stop(self.settings.shutdown_timeout_s)
        for broker in self.brokers:
            broker.stop()
        self.archiver.stop()
        self.pool.close()
        log.info("ingest stopped", extra={"drained": drained, "stored": self.batcher.stats.stored})

    # pipeline --------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.pool.connection() as conn:
            migrate(conn)

    def _require_schema(self) -> None:
        with self.pool.connection() as conn:
            require_schema(conn)

    def _on_message(self, broker: BrokerConnection, message: mqtt.MQTTMessage) -> None:
        self.metrics.received.inc()
        self.received += 1
        try:
            reading = parse_message(
                message.topic,
                message.payload,
                now=datetime.now(UTC),
                max_clock_skew=timedelta(seconds=self.settings.max_clock_skew_s),
                max_age=timedelta(seconds=self.settings.max_age_s),
            )
        except Rejected as rejected:
            self.metrics.rejected.labels(rejected.reason).inc()
            self.rejected_by_reason[rejected.reason] = self.rejected_by_reason.get(rejected.reason, 0) + 1
            log.warning(
                "rejected a message",
                extra={"reason": rejected.reason, "detail": rejected.detail, "topic": message.topic[:200]},
            )
            # Acknowledged: a malformed message stays malformed; redelivering it helps nobody.
            broker.ack(message.mid, message.qos)
            return
        mid, qos = message.mid, message.qos
        self.batcher.put(Pending(reading, lambda: broker.ack(mid, qos)))
        self.metrics.queued.set(self.batcher.queued())

    def _write(self, readings: list[Reading]) -> tuple[int, int]:
        """The batcher's sink. A batch the database cannot take yet raises (HeldForSource among
        others) and the batcher keeps it; readings the source already stored come back as
        duplicates, which is what they are for this ingest: it wrote none of them."""
        with self.metrics.flush_seconds.time():
            written = self.store.write_batch(readings)
        self.metrics.stored.inc(written.stored)
        self.metrics.duplicates.inc(written.duplicates)
        if written.by_source:
            self.metrics.stored_by_source.inc(written.by_source)
            with self._stored_by_source_lock:
                self.stored_by_source += written.by_source
        return written.stored, written.duplicates

    # health and stats ----------------------------------------------------------------------

    def checks(self) -> list[Check]:
        return [
            Check("database", lambda: database.probe(self.pool)),
            Check("storage", lambda: storage.probe_bucket(self.s3, self.settings.archive_bucket)),
            Check("brokers", self._brokers_probe),
            Check("schema", self._schema_probe),
        ]

    def _brokers_probe(self) -> str:
        states = {b.name: b.status() for b in self.brokers}
        if not any(b.connected.is_set() for b in self.brokers):
            raise ConnectionError(f"no broker connected: {states}")
        return ", ".join(f"{name} {state}" for name, state in states.items())

    def _schema_probe(self) -> str:
        if not self.batcher.ready.is_set():
            raise RuntimeError(f"schema not migrated yet: {self.batcher.stats.last_error or 'waiting'}")
        return "migrated"

    def stats(self) -> dict[str, Any]:
        s = self.batcher.stats
        return {
            "received": self.received,
            "rejected": dict(self.rejected_by_reason),
            "stored": s.stored,
            "duplicates": s.duplicates,
            "stored_by_source": self.stored_by_source,
            "batches": s.batches,
            "write_failures": s.failures,
            "last_error": s.last_error,
            "queued": self.batcher.queued(),
            "archived_hours": self.archiver.archived,
            "archive_error": self.archiver.last_error,
            "brokers": {b.name: b.status() for b in self.brokers},
        }
