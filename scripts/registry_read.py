#!/usr/bin/env python3
"""An independent reader of a canonical topic in the Confluent wire format.

It uses confluent-kafka's DeserializingConsumer with its AvroDeserializer,
pointed at the schema registry (Apicurio's Confluent-compatible API). It
reads TOPIC from the start until it has decoded COUNT records, or until
TIMEOUT seconds pass. It prints one JSON line per record, {"key", "id",
"party"} (the party's name, for records that have one),
and exits 1 if a record does not decode or fewer than COUNT arrive.

    registry_read.py BROKERS REGISTRY_URL TOPIC COUNT [TIMEOUT]
"""
import json
import sys
import time
import uuid

from confluent_kafka import DeserializingConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import StringDeserializer


def main():
    brokers, registry, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 60.0
    client = SchemaRegistryClient({"url": registry})
    consumer = DeserializingConsumer({
        "bootstrap.servers": brokers,
        "group.id": "registry-read-" + uuid.uuid4().hex,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "key.deserializer": StringDeserializer("utf_8"),
        "value.deserializer": AvroDeserializer(client),
    })
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while seen < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                print(f"error: {message.error()}", file=sys.stderr)
                return 1
            value = message.value()
            record = value if isinstance(value, dict) else {}
            print(json.dumps({
                "key": message.key(),
                "id": record.get("id"),
                "party": (record.get("party") or {}).get("name"),
            }, ensure_ascii=False))
            seen += 1
    finally:
        consumer.close()
    if seen < count:
        print(f"only {seen} of {count} records decoded", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
