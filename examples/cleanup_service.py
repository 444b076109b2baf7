#!/usr/bin/env python3
"""A reference cleanup service: acts once on every KILLED decision.

earlykill publishes its decisions to the decisions topic, each record an
Avro single-object encoded MonitoringDecision (bytes C3 01, the 8-byte
CRC-64-AVRO fingerprint of the writer schema, the Avro datum). A cleanup
service reads them and stops the spend on killed variants (deletes the post,
pauses the promotion, ...). This example shows the parts that must be right
whatever the action is:

- read_committed: only decisions of committed transactions are seen, never
  those of an aborted one;
- deduplicate on decision_id: under at-least-once (and after a crash of this
  service between acting and committing) the same decision can arrive more
  than once; its id is the same every time, so the action is taken once;
- act, record the decision id, then commit the offset: a crash between the
  two only redelivers a decision already acted on, which the record catches.

Decisions written with `earlykill run --decisions-format registry` are
framed for the Confluent Schema Registry instead (a zero byte, the schema
id, the datum): give --schema-registry-url and they are read with
Confluent's own AvroDeserializer, as any Confluent client would
(pip install "confluent-kafka[schemaregistry,avro]"). Both framings can be
read by the same service, so a topic can change format without a gap.

The action here appends one JSON line to a file (--actions); replace
`act()` with the real call. The acted decision ids are kept in SQLite
(--state), in the same spirit as the offsets: durable across restarts.

    pip install confluent-kafka fastavro
    python3 examples/cleanup_service.py --bootstrap-servers kafka:9092 \\
        --schema schemas/monitoring_decision.avsc

Fields of a decision (see schemas/monitoring_decision.avsc for all): kind
(STARTED, KILLED, TIMED_OUT, STOPPED), decision_id (deterministic: the same
decision always has the same id), variant_id, persona_id, post_id (what to
act on), engagement_rate, interactions, views, kill_threshold,
expected_engagement_rate, decided_at (event time, ms), reason (a sentence
with the figures), trigger_event_id (the interaction that crossed the
threshold).
"""

import argparse
import io
import json
import sqlite3
import sys
import time

import fastavro
from confluent_kafka import Consumer, KafkaError
from confluent_kafka.serialization import SerializationError
from fastavro.schema import fingerprint, to_parsing_canonical_form

MARKER = b"\xc3\x01"


def load_schema(path):
    with open(path) as f:
        parsed = fastavro.parse_schema(json.load(f))
    # The fingerprint as it appears in the record's header.
    return parsed, bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def registry_decoder(url, topic):
    """Reads Confluent-framed records with Confluent's AvroDeserializer."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    deserializer = AvroDeserializer(SchemaRegistryClient({"url": url}))
    context = SerializationContext(topic, MessageField.VALUE)
    return lambda value: deserializer(value, context)


def decode(value, schema, expected_fingerprint, from_registry=None):
    """The decision in `value`, or a ValueError saying why it is not one."""
    if value is not None and value[:1] == b"\x00":
        if from_registry is None:
            raise ValueError("framed for a schema registry: give --schema-registry-url")
        return from_registry(value)
    if value is None or len(value) < 10 or value[:2] != MARKER:
        raise ValueError("not an Avro single-object encoded record")
    if value[2:10] != expected_fingerprint:
        raise ValueError(
            f"written with schema fingerprint {value[2:10].hex()}, not this "
            f"consumer's {expected_fingerprint.hex()}: load that schema version too"
        )
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), schema)


class Acted:
    """Decision ids already acted on, in SQLite."""

    def __init__(self, path):
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS acted (decision_id TEXT PRIMARY KEY, at REAL)")
        self.db.commit()

    def seen(self, decision_id):
        row = self.db.execute("SELECT 1 FROM acted WHERE decision_id = ?", (decision_id,)).fetchone()
        return row is not None

    def record(self, decision_id):
        self.db.execute("INSERT OR IGNORE INTO acted VALUES (?, ?)", (decision_id, time.time()))
        self.db.commit()


def act(decision, actions_path):
    """The cleanup itself. Here: one JSON line per killed variant."""
    with open(actions_path, "a") as f:
        f.write(json.dumps({
            "action": "delete_post",
            "decision_id": decision["decision_id"],
            "variant_id": decision["variant_id"],
            "post_id": decision["post_id"],
            "engagement_rate": decision["engagement_rate"],
            "reason": decision["reason"],
        }) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", default="earlykill.decisions")
    parser.add_argument("--group-id", default="cleanup-service")
    parser.add_argument("--schema", default="schemas/monitoring_decision.avsc")
    parser.add_argument("--actions", default="cleanup-actions.jsonl")
    parser.add_argument("--state", default="cleanup-state.sqlite")
    parser.add_argument("--schema-registry-url", default=None,
                        help="for decisions written with --decisions-format registry")
    parser.add_argument("--exit-when-idle", type=float, default=None,
                        help="exit after this many seconds without a record (for tests)")
    args = parser.parse_args()

    schema, expected = load_schema(args.schema)
    from_registry = (registry_decoder(args.schema_registry_url, args.topic)
                     if args.schema_registry_url else None)
    acted = Acted(args.state)
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap_servers,
        "group.id": args.group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([args.topic])
    counts = {"read": 0, "acted": 0, "duplicates": 0, "undecodable": 0}
    idle_since = time.monotonic()
    try:
        while True:
            message = consumer.poll(0.5)
            if message is None:
                if args.exit_when_idle is not None and time.monotonic() - idle_since > args.exit_when_idle:
                    break
                continue
            if message.error():
                if message.error().code() != KafkaError._PARTITION_EOF:
                    print(f"consumer error: {message.error()}", file=sys.stderr)
                continue
            idle_since = time.monotonic()
            counts["read"] += 1
            try:
                decision = decode(message.value(), schema, expected, from_registry)
            except (ValueError, SerializationError) as e:
                # Nothing earlykill writes; log it and move on. (A registry
                # outage raises something else: the service stops before
                # committing, and the record is read again.)
                counts["undecodable"] += 1
                print(f"skipped partition {message.partition()} offset {message.offset()}: {e}",
                      file=sys.stderr)
            else:
                if decision["kind"] == "KILLED":
                    if acted.seen(decision["decision_id"]):
                        counts["duplicates"] += 1
                    else:
                        act(decision, args.actions)
                        acted.record(decision["decision_id"])
                        counts["acted"] += 1
            # After acting (and recording it): a crash before this line
            # redelivers a decision the record already has.
            consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
