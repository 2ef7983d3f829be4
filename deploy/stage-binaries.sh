#!/bin/sh
# Copies flowlake's binaries from a cargo release directory into DEST, stripped of symbols
# and debug info, for the container image (deploy/Containerfile). Prints each size.
#   deploy/stage-binaries.sh target/release target/image-bin
set -eu
src=$1
dest=$2
mkdir -p "$dest"
for bin in flowlake flowlake-ingest flowlake-enrich flowlake-aggregate flowlake-sink flowlake-identity-publisher; do
  [ -x "$src/$bin" ] || { echo "missing $src/$bin: run cargo build --release --workspace --bins" >&2; exit 1; }
  # strip is a no-op on an already stripped binary (the Containerfile's build stage).
  strip --strip-all -o "$dest/$bin" "$src/$bin"
  echo "$bin $(wc -c <"$src/$bin") -> $(wc -c <"$dest/$bin") bytes"
done
