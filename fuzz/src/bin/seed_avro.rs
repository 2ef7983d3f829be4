//! Writes the seeds that cannot be copied from tests/fixtures: the sample FlowEvent and
//! EnrichedFlow (and an all-default FlowEvent) in Avro single-object encoding and Confluent
//! framing (schema id `CONFLUENT_ID`), and the sample FlowEvent as canonical JSON.
//! Usage: `seed_avro CORPUS_DIR` (run by seed.sh); prints how many files it wrote.

use std::path::Path;
use std::process::ExitCode;

use flowlake_fuzz::CONFLUENT_ID;
use flowlake_ingest::Format;
use flowlake_schemas::{AvroCodec, AvroRecord, FlowEvent, samples};

/// Single-object encoding → Confluent framing: magic byte, big-endian id, the same datum.
fn confluent(single_object: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&CONFLUENT_ID.to_be_bytes());
    framed.extend_from_slice(single_object.get(10..).unwrap_or_default());
    framed
}

fn encodings<T: AvroRecord>(record: &T) -> Result<[Vec<u8>; 2], String> {
    let single = AvroCodec::<T>::new()
        .map(|c| c.encode(record))
        .map_err(|e| format!("{}: {e}", T::NAME))?;
    let framed = confluent(&single);
    Ok([single, framed])
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> Result<(), String> {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn pinned(format: Format, message: &[u8]) -> Vec<u8> {
    let mut input = vec![u8::try_from(format.index()).unwrap_or_default()];
    input.extend_from_slice(message);
    input
}

fn run(corpus: &Path) -> Result<usize, String> {
    let mut written = 0;
    let events = [
        ("sample", samples::flow_event()),
        ("default", FlowEvent::default()),
    ];
    for (name, event) in &events {
        for (framing, bytes) in ["single", "confluent"].iter().zip(encodings(event)?) {
            let file = format!("avro-flow-event-{name}-{framing}");
            write(corpus, "decode_any", &file, &bytes)?;
            write(corpus, "avro_framing", &file, &bytes)?;
            write(
                corpus,
                "decode_pinned",
                &file,
                &pinned(Format::named("canonical-avro"), &bytes),
            )?;
            written += 3;
        }
    }
    let enriched = samples::enriched_flow();
    for (framing, bytes) in ["single", "confluent"].iter().zip(encodings(&enriched)?) {
        write(
            corpus,
            "avro_framing",
            &format!("avro-enriched-flow-{framing}"),
            &bytes,
        )?;
        written += 1;
    }
    let json = serde_json::to_vec(&samples::flow_event()).map_err(|e| e.to_string())?;
    write(corpus, "decode_any", "canonical-json-sample", &json)?;
    write(
        corpus,
        "decode_pinned",
        "canonical-json-sample",
        &pinned(Format::named("canonical-json"), &json),
    )?;
    Ok(written + 2)
}

fn main() -> ExitCode {
    let Some(corpus) = std::env::args_os().nth(1) else {
        eprintln!("usage: seed_avro CORPUS_DIR");
        return ExitCode::from(2);
    };
    match run(Path::new(&corpus)) {
        Ok(n) => {
            println!("seed_avro: {n} files");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("seed_avro: {e}");
            ExitCode::FAILURE
        }
    }
}
