"""Read a Parquet dataset the way a user would: pyarrow to fetch it, DuckDB to query it.

    read_parquet.py --s3-endpoint http://127.0.0.1:PORT --bucket B [--prefix flows/] [--sql Q]
    read_parquet.py --local DIR [--sql Q]

Lists every *.parquet object under the prefix (S3, via pyarrow.fs.S3FileSystem; DuckDB's
httpfs cannot be downloaded here) or under DIR, copies S3 objects to a temporary directory
keeping their keys (so the Hive layout `cluster_id=…/date=…/hour=…` survives), and reads
them all with DuckDB `read_parquet([...], hive_partitioning = true)` as a view `t`.

Prints one JSON document:
    {"files": N, "rows": N, "columns": [names], "schema": [{"name", "type"}],
     "keys": [object keys in the bucket (with --s3-endpoint) or paths relative to DIR, sorted],
     "parquet": [{"key", "rows", "row_groups", "compression": [...], "statistics": bool}],
     "query": [rows of --sql as dicts] or null}
Bytes print as hex, dates and times as ISO 8601, decimals as strings.
"""

import argparse
import datetime
import decimal
import json
import os
import sys
import tempfile
import uuid

import duckdb
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--s3-endpoint", help="http://host:port of the S3 server")
    src.add_argument("--local", help="a local directory holding the dataset")
    p.add_argument("--bucket", help="bucket (with --s3-endpoint)")
    p.add_argument("--prefix", default="", help="key prefix, e.g. flows/ (with --s3-endpoint)")
    p.add_argument("--sql", help="a query over the view t")
    p.add_argument("--access-key", default="test")
    p.add_argument("--secret-key", default="test")
    p.add_argument("--region", default="us-east-1")
    args = p.parse_args()
    if args.s3_endpoint and not args.bucket:
        p.error("--bucket is required with --s3-endpoint")
    return args


def s3_download(args, dest):
    """Copies every *.parquet under bucket/prefix into dest/<key>; returns (dest, keys)."""
    endpoint = args.s3_endpoint
    scheme = "https" if endpoint.startswith("https://") else "http"
    endpoint = endpoint.split("://", 1)[-1].rstrip("/")
    fs = pafs.S3FileSystem(
        endpoint_override=endpoint,
        scheme=scheme,
        access_key=args.access_key,
        secret_key=args.secret_key,
        region=args.region,
        allow_bucket_creation=False,
    )
    root = f"{args.bucket}/{args.prefix}"
    # The prefix may end inside a name ("flows/cluster_id=a"); list its directory, then filter.
    base = root.rstrip("/") if root.endswith("/") else os.path.dirname(root)
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    keys = []
    for info in infos:
        if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
            continue
        if not info.path.startswith(root):
            continue
        # Keep the whole key, so every Hive partition directory is in the local path too.
        rel = info.path[len(args.bucket) + 1:]
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with fs.open_input_stream(info.path) as src, open(target, "wb") as out:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        keys.append(rel)
    return dest, sorted(keys)


def local_files(directory):
    keys = []
    for dirpath, _dirs, files in os.walk(directory):
        for name in files:
            if name.endswith(".parquet"):
                keys.append(os.path.relpath(os.path.join(dirpath, name), directory))
    return directory, sorted(keys)


def to_json(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    raise TypeError(f"cannot print {type(value).__name__}")


def parquet_info(root, key):
    meta = pq.ParquetFile(os.path.join(root, key)).metadata
    codecs, stats = set(), meta.num_row_groups > 0
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for col in range(group.num_columns):
            column = group.column(col)
            codecs.add(column.compression)
            stats = stats and column.is_stats_set
    return {
        "key": key,
        "rows": meta.num_rows,
        "row_groups": meta.num_row_groups,
        "compression": sorted(codecs),
        "statistics": stats,
    }


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="flowlake-parquet-") as tmp:
        if args.s3_endpoint:
            root, keys = s3_download(args, tmp)
        else:
            root, keys = local_files(args.local)
        result = {
            "files": len(keys),
            "rows": 0,
            "columns": [],
            "schema": [],
            "keys": keys,
            "parquet": [parquet_info(root, k) for k in keys],
            "query": None,
        }
        if keys:
            con = duckdb.connect()
            paths = [os.path.join(root, k) for k in keys]
            listing = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
            con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet([{listing}], hive_partitioning = true)")
            described = con.execute("DESCRIBE t").fetchall()
            result["columns"] = [row[0] for row in described]
            result["schema"] = [{"name": row[0], "type": row[1]} for row in described]
            result["rows"] = con.execute("SELECT count(*) FROM t").fetchone()[0]
            if args.sql:
                cur = con.execute(args.sql)
                names = [d[0] for d in cur.description]
                result["query"] = [dict(zip(names, row)) for row in cur.fetchall()]
        elif args.sql:
            print("no parquet files found; --sql not run", file=sys.stderr)
        json.dump(result, sys.stdout, default=to_json)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
