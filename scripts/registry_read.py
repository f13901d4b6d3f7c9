#!/usr/bin/env python3
"""An independent reader of a canonical topic in the Confluent wire format.

It uses confluent-kafka's DeserializingConsumer with its AvroDeserializer,
pointed at the schema registry (Apicurio's Confluent-compatible API). It
reads TOPIC from the start until it has decoded COUNT records (`all`: every
record the topic held when it started), or until TIMEOUT seconds pass. It prints one JSON line per record, {"key", "id",
"party"} (the party's name, for records that have one),
and exits 1 if a record does not decode or fewer than COUNT arrive.

    registry_read.py BROKERS REGISTRY_URL TOPIC COUNT [TIMEOUT]
"""
import json
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, DeserializingConsumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import StringDeserializer


def main():
    brokers, registry, topic = sys.argv[1], sys.argv[2], sys.argv[3]
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
    # Every partition from its start; with `all`, up to the end it had now
    # (its position past that end: transaction markers take offsets too).
    partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    every = sys.argv[4] == "all"
    count = 0 if every else int(sys.argv[4])
    assigned = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
    consumer.assign(assigned)

    def done():
        if not every:
            return seen >= count
        positions = consumer.position([TopicPartition(topic, p) for p in partitions])
        return all(t.offset >= ends[t.partition] or ends[t.partition] == 0 for t in positions)

    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while not done() and time.monotonic() < deadline:
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
        finished = done()
    finally:
        consumer.close()
    if every and not finished:
        print(f"the topic's end not reached in {timeout} s ({seen} records decoded)", file=sys.stderr)
        return 1
    if seen < count:
        print(f"only {seen} of {count} records decoded", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
