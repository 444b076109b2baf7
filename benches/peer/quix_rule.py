"""earlykill's rule written as a Quix Streams application: the peer of
`cargo bench --bench peer` (issue 35, item 4).

Written the way a Quix Streams user would: Application defaults (at-least-
once, RocksDB state, commits every 5 s), one StreamingDataFrame per input
topic concatenated into one, a stateful `apply` keyed by variant_id, and
the decisions sent on with `to_topic` as JSON. The records are decoded with
fastavro from the schemas in `schemas/` (earlykill's single-object
encoding: a 10-byte header, then the Avro body).

The rule is earlykill's (README, "The rule"): a session starts at its post;
views count views, every other kind counts interactions, each event_id
once; a session is killed as soon as it has at least `min_interactions`
interactions and a rate below `kill_threshold x expected_engagement_rate`;
an operator's stop (commands topic) ends it; it times out at
`posted_at + timeout_minutes`. Quix Streams has no
per-key event-time timer, so a timeout is decided when the next event of
the same variant arrives at or after the deadline; a variant that gets no
more events never times out here (the bench says how many).

Prints `first <n>` when the first record is processed and `done <n>` once
`--records` records are, both flushed at once; the bench times between.
"""

import argparse
import io
import json
import sys
from pathlib import Path

from fastavro import parse_schema, schemaless_reader
from quixstreams import Application
from quixstreams.models.serializers import Deserializer

KILL_THRESHOLD, MIN_INTERACTIONS, TIMEOUT_MINUTES = 0.5, 10, 10


def plain(schema):
    """The schema without logical types: times stay epoch milliseconds."""
    if isinstance(schema, dict):
        return {k: plain(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [plain(s) for s in schema]
    return schema


class SingleObjectAvro(Deserializer):
    def __init__(self, schema_file):
        super().__init__()
        self.schema = parse_schema(plain(json.loads(Path(schema_file).read_text())))

    def __call__(self, value, ctx):
        return schemaless_reader(io.BytesIO(value[10:]), self.schema, None)


def decision(session, variant_id, kind, at, reason):
    return {
        "variant_id": variant_id,
        "kind": kind,
        "at": at,
        "interactions": session["interactions"],
        "views": session["views"],
        "reason": reason,
    }


def fold(event, state):
    """One event of one variant; returns the decisions it makes."""
    variant_id = event["variant_id"]
    session = state.get("session")
    out = []
    if "posted_at" in event:
        if session is not None:
            return out
        posted_at = event["posted_at"]
        minutes = event.get("timeout_minutes") or TIMEOUT_MINUTES
        session = {
            "expected": event["expected_engagement_rate"],
            "threshold": event.get("kill_threshold") or KILL_THRESHOLD,
            "min": event.get("min_interactions") or MIN_INTERACTIONS,
            "deadline": posted_at + minutes * 60_000,
            "interactions": 0,
            "views": 0,
            "status": "active",
        }
        out.append(decision(session, variant_id, "started", posted_at, "posted"))
        held = state.get("held") or []
        state.delete("held")
        events = held
    else:
        if session is None:
            held = state.get("held") or []
            held.append(event)
            state.set("held", held)
            return out
        events = [event]
    for e in events:
        if session["status"] != "active":
            break
        at = e.get("occurred_at", e.get("requested_at"))
        if at >= session["deadline"]:
            session["status"] = "timed_out"
            out.append(
                decision(session, variant_id, "timed_out", session["deadline"], "timeout")
            )
            break
        if "requested_at" in e:
            session["status"] = "stopped"
            out.append(decision(session, variant_id, "stopped", at, e["reason"]))
            break
        seen = "seen:" + e["event_id"]
        if state.get(seen):
            continue
        state.set(seen, True)
        if e["kind"] == "VIEW":
            session["views"] += e["count"]
        else:
            session["interactions"] += e["count"]
        n, v = session["interactions"], session["views"]
        if n >= session["min"] and v > 0 and n / v < session["threshold"] * session["expected"]:
            session["status"] = "killed"
            out.append(decision(session, variant_id, "killed", at, "below threshold"))
    state.set("session", session)
    return out


def main():
    args = argparse.ArgumentParser()
    for name in ("bootstrap", "group", "posted", "interactions", "commands",
                 "decisions", "state-dir", "schemas"):
        args.add_argument("--" + name, required=True)
    args.add_argument("--records", type=int, required=True)
    args = args.parse_args()

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel="WARNING",
        on_message_processed=Progress(args.records),
    )
    schemas = Path(args.schemas)
    posted = app.topic(
        args.posted,
        key_deserializer="str",
        value_deserializer=SingleObjectAvro(schemas / "variant_posted.avsc"),
    )
    interactions = app.topic(
        args.interactions,
        key_deserializer="str",
        value_deserializer=SingleObjectAvro(schemas / "interaction.avsc"),
    )
    commands = app.topic(
        args.commands,
        key_deserializer="str",
        value_deserializer=SingleObjectAvro(schemas / "stop_monitoring.avsc"),
    )
    decisions = app.topic(args.decisions, value_serializer="json", key_serializer="str")
    sdf = (
        app.dataframe(posted)
        .concat(app.dataframe(interactions))
        .concat(app.dataframe(commands))
    )
    sdf = sdf.apply(fold, stateful=True, expand=True)
    sdf.to_topic(decisions)
    app.run()


class Progress:
    """Counts processed records; says when the first and the last are done."""

    def __init__(self, records):
        self.records, self.seen = records, 0

    def __call__(self, topic, partition, offset):
        self.seen += 1
        if self.seen == 1:
            print("first", self.seen, flush=True)
        if self.seen == self.records:
            print("done", self.seen, flush=True)


if __name__ == "__main__":
    sys.exit(main())
