"""Commands to devices: published on every broker pod, because a device is connected to one of
them and the registry cannot know which (docs/broker-ha.md); the others have no subscriber and
drop it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from device_registry.settings import SERVICE
from service_common.health import Check
from service_common.mqtt import BrokerConnection, client_id
from service_common.settings import BrokerSettings


class CommandPublisher:
    def __init__(self, settings: BrokerSettings, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self.brokers = [
            BrokerConnection(
                url,
                client_id=client_id(SERVICE, index),
                username=settings.mqtt_username,
                password=settings.mqtt_password.get_secret_value(),
            )
            for index, url in enumerate(settings.broker_urls())
        ]
        self._pool = ThreadPoolExecutor(max_workers=max(len(self.brokers), 1), thread_name_prefix="publish")

    def start(self) -> None:
        for broker in self.brokers:
            broker.start()

    def stop(self) -> None:
        for broker in self.brokers:
            broker.stop()
        self._pool.shutdown(wait=False)

    def publish(self, topic: str, payload: bytes) -> int:
        """QoS 1 on every broker at once; returns how many acknowledged it."""
        futures = [self._pool.submit(b.publish, topic, payload, qos=1, timeout_s=self._timeout_s) for b in self.brokers]
        return sum(1 for future in futures if future.result())

    def check(self) -> Check:
        def probe() -> str:
            states = {b.name: b.status() for b in self.brokers}
            if not any(b.connected.is_set() for b in self.brokers):
                raise ConnectionError(f"no broker connected: {states}")
            return ", ".join(f"{name} {state}" for name, state in states.items())

        return Check("brokers", probe)
