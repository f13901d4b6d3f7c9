#!/usr/bin/env python3
"""Decodes duijie's provenance header (`duijie-provenance`, layout 1).

A reference decoder for consumers of the hub's topics, in plain Python with
no dependencies. The layout (docs/OPERATING.md, "The provenance header"): one byte,
the layout version (1); then fields, each a tag byte, the value's length as
an unsigned LEB128 varint, and the value. Unknown tags are skipped, so a
later hub may add fields; another layout version is refused.

Usage: provenance.py HEX        (the header's value in hex)
       provenance.py - < FILE   (the header's raw bytes)
Prints the fields as one JSON object.
"""
import datetime
import json
import sys

TEXT = {
    1: "source_system",
    2: "source_id",
    4: "connector",
    5: "pipeline",
    6: "mapping",
    9: "origin",
    10: "schema",
    11: "content_type",
    12: "code_tables",
    13: "raw",
    14: "payload_format",
}


def decode(value: bytes) -> dict:
    if not value:
        raise ValueError("empty provenance header")
    if value[0] != 1:
        raise ValueError(f"provenance layout {value[0]}, this decoder reads layout 1")
    out, i = {}, 1
    while i < len(value):
        tag = value[i]
        i += 1
        length, shift = 0, 0
        while True:
            if i >= len(value) or shift > 28:
                raise ValueError("provenance header cut short")
            byte = value[i]
            i += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        field = value[i : i + length]
        if len(field) != length:
            raise ValueError("provenance header cut short")
        i += length
        if tag in TEXT:
            out[TEXT[tag]] = field.decode("utf-8", "replace")
        elif tag == 3:
            ms = int.from_bytes(field, "big", signed=True)
            out["fetched_at_ms"] = ms
            out["fetched_at"] = (
                datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )
        elif tag == 7:
            out["mapping_version"] = int.from_bytes(field, "big")
        elif tag == 8:
            out["payload_sha256"] = field.hex()
    return out


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    arg = sys.argv[1]
    value = sys.stdin.buffer.read() if arg == "-" else bytes.fromhex(arg)
    try:
        print(json.dumps(decode(value), ensure_ascii=False, sort_keys=True))
    except ValueError as e:
        print(f"provenance.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
