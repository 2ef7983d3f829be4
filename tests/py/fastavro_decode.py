"""Decode Avro datums with fastavro, a reader nobody in this project wrote.

    fastavro_decode.py --schema schemas/avro/FlowEvent.avsc [--schema Other.avsc …]
                       [--single-object | --confluent] < hex-lines

Reads one hex-encoded message per stdin line (blank lines skipped) and prints one JSON line
per record. The last --schema is the writer schema; earlier ones supply named types it
refers to (a schema that names unknown types is also resolved from its own directory).

Framing:
  (default)        the bare Avro binary datum
  --single-object  Avro single-object encoding: C3 01, the 8-byte little-endian CRC-64-AVRO
                   fingerprint of the schema's Parsing Canonical Form (checked), then the datum
  --confluent      Confluent wire format: 00, a 4-byte big-endian schema id (printed to
                   stderr, not checked), then the datum

Values are raw: logical types are not applied (timestamp-micros prints as an integer of
microseconds, decimals and uuids as their underlying type), bytes and fixed print as hex.
A line that does not decode, or leaves bytes unread, fails the run (exit 1) naming the line.
"""

import argparse
import copy
import io
import json
import os
import sys

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

SINGLE_OBJECT_MARKER = b"\xc3\x01"


def strip_logical_types(node):
    """A copy of a schema JSON tree without logicalType annotations, so values stay raw."""
    if isinstance(node, dict):
        return {k: strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [strip_logical_types(v) for v in node]
    return node


def load_schemas(paths):
    """Returns (reader schema for decoding, parsed original schema for the fingerprint)."""
    named_raw, named_orig = {}, {}
    raw = orig = None
    for path in paths:
        with open(path, encoding="utf-8") as f:
            tree = json.load(f)
        try:
            orig = parse_schema(copy.deepcopy(tree), named_schemas=named_orig)
            raw = parse_schema(strip_logical_types(tree), named_schemas=named_raw)
        except fastavro.schema.UnknownType:
            # Refers to types kept in sibling files named after them: let fastavro find them.
            orig = fastavro.schema.load_schema(path, named_schemas=named_orig)
            expanded = fastavro.schema.expand_schema(orig)
            raw = parse_schema(strip_logical_types(expanded), named_schemas=named_raw)
    return raw, orig


def to_json(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    raise TypeError(f"cannot print {type(value).__name__}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--schema", action="append", required=True, help="an .avsc file (repeatable)")
    framing = p.add_mutually_exclusive_group()
    framing.add_argument("--single-object", action="store_true")
    framing.add_argument("--confluent", action="store_true")
    args = p.parse_args()

    schema, original = load_schemas(args.schema)
    # CRC-64-AVRO over the Parsing Canonical Form; fastavro's hex is the little-endian byte
    # order the single-object header carries ("null" -> 8a8f25cce724dd63).
    expected_fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(original), "CRC-64-AVRO"))

    failed = False
    for lineno, line in enumerate(sys.stdin, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            data = bytes.fromhex(line)
            if args.single_object:
                if data[:2] != SINGLE_OBJECT_MARKER:
                    raise ValueError(f"no single-object marker C3 01 (starts {data[:2].hex()})")
                if data[2:10] != expected_fp:
                    raise ValueError(
                        f"fingerprint {data[2:10].hex()} is not the schema's {expected_fp.hex()}"
                    )
                data = data[10:]
            elif args.confluent:
                if data[:1] != b"\x00" or len(data) < 5:
                    raise ValueError(f"no Confluent magic byte 00 (starts {data[:1].hex()})")
                print(f"line {lineno}: schema id {int.from_bytes(data[1:5], 'big')}", file=sys.stderr)
                data = data[5:]
            buf = io.BytesIO(data)
            record = fastavro.schemaless_reader(buf, schema, None)
            if buf.tell() != len(data):
                raise ValueError(f"{len(data) - buf.tell()} bytes left after the record")
        except Exception as e:  # report and go on, so one run shows every bad line
            print(f"line {lineno}: {type(e).__name__}: {e}", file=sys.stderr)
            failed = True
            continue
        sys.stdout.write(json.dumps(record, default=to_json, sort_keys=True) + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
