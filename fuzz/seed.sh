#!/usr/bin/env bash
# Seeds the fuzz corpora from the real samples: every line of tests/fixtures/**/*.json*
# becomes one corpus file of decode_any, and of decode_pinned once per format (first byte
# = the format's index in Format::ALL, so the hubble decoder sees Hubble lines pinned, and
# the canonical ones see them too); a pretty-printed JSON file is also taken whole. The
# Avro and canonical-JSON seeds come from the `seed_avro` binary. Idempotent: file names
# are derived from the source, so a re-run overwrites.
#
# Usage: fuzz/seed.sh            (from anywhere; writes fuzz/corpus/<target>/)
set -euo pipefail

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$fuzz_dir")"
corpus="$fuzz_dir/corpus"
# How many formats decode_pinned chooses from: the selector byte is taken modulo this, so
# seeding 0..N-1 covers each once. Kept in step with Format::ALL by counting the entries of FORMATS.
formats="$(sed -n '/pub const FORMATS/,/];/p' "$repo/ingest/src/formats/mod.rs" | grep -c '::SPEC,')"
[ "$formats" -gt 0 ] || { echo "seed.sh: cannot count FORMATS" >&2; exit 1; }

mkdir -p "$corpus/decode_any" "$corpus/decode_pinned" "$corpus/avro_framing"
lines=0
while IFS= read -r -d '' file; do
  rel="${file#"$repo/tests/fixtures/"}"
  stem="$(printf '%s' "$rel" | tr '/.' '__')"
  n=0
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    [ -n "${line//[[:space:]]/}" ] || continue
    printf '%s' "$line" > "$corpus/decode_any/$stem-$n"
    for ((f = 0; f < formats; f++)); do
      { printf "\\x$(printf '%02x' "$f")"; printf '%s' "$line"; } > "$corpus/decode_pinned/$stem-$n-f$f"
    done
    lines=$((lines + 1))
  done < "$file"
  # A file that is one pretty-printed document is also one message.
  if [ "$(head -c1 "$file")" = "{" ] || [ "$(head -c1 "$file")" = "[" ]; then
    cp "$file" "$corpus/decode_any/$stem-whole"
  fi
done < <(find "$repo/tests/fixtures" -type f -name '*.json*' -print0 | sort -z)

# The Avro seeds: the binary `cargo fuzz build` made, else a plain build of it.
seed_avro="$fuzz_dir/target/x86_64-unknown-linux-gnu/release/seed_avro"
if [ -x "$seed_avro" ]; then
  "$seed_avro" "$corpus"
else
  (cd "$fuzz_dir" && cargo run --quiet --release --bin seed_avro -- "$corpus")
fi
for target in decode_any decode_pinned avro_framing; do
  echo "seed.sh: $target: $(find "$corpus/$target" -type f | wc -l) files"
done
echo "seed.sh: $lines fixture lines"
