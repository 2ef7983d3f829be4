//! Confluent Schema Registry lookups for canonical Avro in Confluent framing.
//!
//! A Confluent schema id that the codec does not know (not in `ingest.confluent_schema_ids`,
//! not learnt yet) is looked up once with `GET {url}/schemas/ids/{id}`. A `flowlake.FlowEvent`
//! schema is added to the codec and never fetched again: a registry id names one schema
//! forever. A failed lookup is remembered per id — `unknown_schema` for
//! [`UNKNOWN_SCHEMA_TTL`], `schema_registry_unavailable` for [`UNAVAILABLE_RETRY`] — so a
//! flood of messages with a bad id costs one request per id and window, not one per message.
//! Nothing is lost on failure: the message is dead-lettered byte-for-byte with the reason, and
//! a `schema_registry_unavailable` record decodes when replayed from the DLQ once the registry
//! answers.
//!
//! `process` is synchronous, so the lookup is a blocking request with a [`REQUEST_TIMEOUT`]
//! run inside `tokio::task::block_in_place`: the runtime moves this worker's other tasks to
//! another thread while we wait, so nothing else stalls. It happens about once per schema id
//! in the life of the process, which does not justify prefetching from `flush_due`.

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use flowlake_runtime::Rejection;
use serde::Deserialize;

use crate::{DecodeContext, reject};

/// How long a schema id the registry does not have (or that is not a FlowEvent) is
/// rejected without asking again: long enough that a flood of bad ids costs one request per
/// id a minute, short enough that a schema registered just after its first message is
/// picked up soon.
pub const UNKNOWN_SCHEMA_TTL: Duration = Duration::from_secs(60);
/// How long after a failed request (unreachable, timeout, error status) messages with that
/// id are dead-lettered without asking: a down registry costs one timeout per id every 10 s
/// instead of one per message, and a recovered one is used within 10 s.
pub const UNAVAILABLE_RETRY: Duration = Duration::from_secs(10);
/// Timeout of one lookup (connect and answer). A registry on the cluster network answers
/// in milliseconds; 2 s bounds how long one partition waits on a sick one.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest registry answer read. A FlowEvent schema is about 6 KiB.
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;
/// Remembered failures beyond which expired ones are dropped (and, if none has expired,
/// all): the cache is bounded however many distinct ids arrive.
const MAX_REMEMBERED_FAILURES: usize = 4096;

/// The record every canonical Avro schema must be.
const FLOW_EVENT: &str = "flowlake.FlowEvent";

/// A Schema Registry client that caches what it learnt.
pub struct SchemaRegistry {
    /// Base URL without a trailing `/`. May carry credentials: never logged or shown.
    base_url: String,
    /// Built on first use (building a blocking client waits on its own runtime thread,
    /// which must not happen on an async thread outside `block_in_place`).
    client: Option<reqwest::blocking::Client>,
    /// Failed lookups by schema id: when they expire and the rejection to repeat until then.
    failures: HashMap<u32, (Instant, Rejection)>,
}

/// The part of the registry's answer we read (`schemaType` is absent for Avro).
#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

impl SchemaRegistry {
    /// A client for the registry at `base_url` (validated by the settings).
    pub fn new(base_url: &str) -> Self {
        SchemaRegistry {
            base_url: base_url.trim_end_matches('/').to_owned(),
            client: None,
            failures: HashMap::new(),
        }
    }

    /// Makes `ctx` able to read Confluent schema id `id`: no-op if it already can, else a
    /// lookup (or the remembered failure of an earlier one, until it expires).
    pub fn resolve(
        &mut self,
        id: u32,
        ctx: &mut DecodeContext,
        now: Instant,
    ) -> Result<(), Rejection> {
        if ctx.knows_confluent_schema(id) {
            return Ok(());
        }
        if let Some((until, rejection)) = self.failures.get(&id)
            && now < *until
        {
            return Err(rejection.clone());
        }
        let result = self.lookup(id).and_then(|schema| {
            ctx.add_confluent_schema(id, &schema).map_err(|e| {
                Rejection::new(
                    reject::UNKNOWN_SCHEMA,
                    format!("Confluent schema id {id}: the registry's schema does not parse: {e}"),
                )
            })
        });
        match result {
            Ok(()) => {
                self.failures.remove(&id);
                tracing::info!(
                    schema_id = id,
                    "learnt a FlowEvent schema from the registry"
                );
                Ok(())
            }
            Err(rejection) => {
                let ttl = if rejection.class == reject::SCHEMA_REGISTRY_UNAVAILABLE {
                    tracing::warn!(schema_id = id, reason = %rejection.message, "schema registry lookup failed");
                    UNAVAILABLE_RETRY
                } else {
                    UNKNOWN_SCHEMA_TTL
                };
                self.remember(id, now + ttl, rejection.clone(), now);
                Err(rejection)
            }
        }
    }

    fn remember(&mut self, id: u32, until: Instant, rejection: Rejection, now: Instant) {
        if self.failures.len() >= MAX_REMEMBERED_FAILURES {
            self.failures.retain(|_, (until, _)| now < *until);
            if self.failures.len() >= MAX_REMEMBERED_FAILURES {
                self.failures.clear();
            }
        }
        self.failures.insert(id, (until, rejection));
    }

    /// Fetches schema `id` and checks that it is a FlowEvent; returns its JSON.
    fn lookup(&mut self, id: u32) -> Result<String, Rejection> {
        let url = format!("{}/schemas/ids/{id}", self.base_url);
        let client = &mut self.client;
        let answer = off_the_async_threads(|| fetch(client, &url))
            .map_err(|reason| unavailable(id, &reason))?;
        let answer = match answer {
            Answer::Found(body) => body,
            Answer::NotFound => {
                return Err(Rejection::new(
                    reject::UNKNOWN_SCHEMA,
                    format!(
                        "Confluent schema id {id}: the Schema Registry has no such schema (404)"
                    ),
                ));
            }
            Answer::Status(status) => {
                return Err(unavailable(id, &format!("HTTP status {status}")));
            }
        };
        let answer: SchemaAnswer = serde_json::from_slice(&answer).map_err(|e| {
            unavailable(
                id,
                &format!("answer is not {{\"schema\": \"…\"}} JSON: {e}"),
            )
        })?;
        if let Some(kind) = answer.schema_type.filter(|k| k != "AVRO") {
            return Err(Rejection::new(
                reject::UNKNOWN_SCHEMA,
                format!("Confluent schema id {id} is a {kind} schema, not Avro {FLOW_EVENT}"),
            ));
        }
        match record_name(&answer.schema) {
            Some(name) if name == FLOW_EVENT => Ok(answer.schema),
            found => Err(Rejection::new(
                reject::UNKNOWN_SCHEMA,
                format!(
                    "Confluent schema id {id} is {}, not {FLOW_EVENT}",
                    found.map_or_else(
                        || "not an Avro record schema".to_owned(),
                        |name| format!("record {name}")
                    )
                ),
            )),
        }
    }
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URL: it may carry credentials.
        f.debug_struct("SchemaRegistry")
            .field("remembered_failures", &self.failures.len())
            .finish_non_exhaustive()
    }
}

fn unavailable(id: u32, reason: &str) -> Rejection {
    Rejection::new(
        reject::SCHEMA_REGISTRY_UNAVAILABLE,
        format!(
            "Confluent schema id {id}: Schema Registry lookup failed ({reason}); the record is \
             intact, replay it from the DLQ once the registry answers"
        ),
    )
}

/// What the registry said, short of parsing it.
enum Answer {
    Found(Vec<u8>),
    NotFound,
    Status(u16),
}

/// One blocking GET; `Err` is a transport failure (connect, timeout, read), without the URL.
fn fetch(client: &mut Option<reqwest::blocking::Client>, url: &str) -> Result<Answer, String> {
    let client = match client {
        Some(client) => client,
        None => client.insert(
            reqwest::blocking::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(REQUEST_TIMEOUT)
                .build()
                .map_err(|e| error_chain(&e.without_url()))?,
        ),
    };
    let response = client
        .get(url)
        .header(
            reqwest::header::ACCEPT,
            "application/vnd.schemaregistry.v1+json, application/json",
        )
        .send()
        .map_err(|e| error_chain(&e.without_url()))?;
    match response.status().as_u16() {
        200 => {
            let mut body = Vec::new();
            response
                .take(MAX_ANSWER_BYTES)
                .read_to_end(&mut body)
                .map_err(|e| format!("reading the answer: {e}"))?;
            Ok(Answer::Found(body))
        }
        404 => Ok(Answer::NotFound),
        status => Ok(Answer::Status(status)),
    }
}

/// Runs blocking `f` without stalling the async runtime: `block_in_place` on a multi-thread
/// runtime (the stages'), a scoped thread on a current-thread one (where `block_in_place`
/// panics), directly outside any runtime (`flowlake decode`, unit tests).
fn off_the_async_threads<T: Send>(
    f: impl FnOnce() -> Result<T, String> + Send,
) -> Result<T, String> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|scope| {
            scope
                .spawn(f)
                .join()
                .unwrap_or_else(|_| Err("the lookup thread panicked".to_owned()))
        }),
        Err(_) => f(),
    }
}

/// `error: cause: cause`, as reqwest's Display shows only the outermost layer.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Full name of the record an Avro schema (JSON text) defines; None if it is not a record.
fn record_name(schema_json: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Named {
        #[serde(rename = "type")]
        kind: String,
        name: String,
        namespace: Option<String>,
    }
    let named: Named = serde_json::from_str(schema_json).ok()?;
    if named.kind != "record" {
        return None;
    }
    Some(match named.namespace {
        Some(ns) if !named.name.contains('.') && !ns.is_empty() => format!("{ns}.{}", named.name),
        _ => named.name,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::IngestSettings;
    use std::io::Write;
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A registry on 127.0.0.1 that answers `answers` requests, each with (status, body),
    /// then closes; the thread returns the request lines it saw.
    pub(crate) fn fake_registry(
        answers: Vec<(u16, String)>,
    ) -> std::io::Result<(String, JoinHandle<Vec<String>>)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for (status, body) in answers {
                let Ok((mut stream, _)) = listener.accept() else {
                    break;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                requests.push(text.lines().next().unwrap_or_default().to_owned());
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            }
            requests
        });
        Ok((url, server))
    }

    fn ctx() -> Result<DecodeContext, crate::IngestError> {
        DecodeContext::new(&IngestSettings::for_cluster("c"))
    }

    #[test]
    fn record_names_resolve_namespaces() {
        let name = |json: &str| record_name(json);
        assert_eq!(
            name(r#"{"type":"record","name":"FlowEvent","namespace":"flowlake","fields":[]}"#)
                .as_deref(),
            Some("flowlake.FlowEvent")
        );
        assert_eq!(
            name(r#"{"type":"record","name":"flowlake.FlowEvent","namespace":"x","fields":[]}"#)
                .as_deref(),
            Some("flowlake.FlowEvent")
        );
        assert_eq!(
            name(r#"{"type":"record","name":"Thing","fields":[]}"#).as_deref(),
            Some("Thing")
        );
        assert_eq!(name(r#""string""#), None);
        assert_eq!(name(r#"{"type":"enum","name":"E","symbols":[]}"#), None);
    }

    #[test]
    fn failures_are_remembered_until_they_expire() -> TestResult {
        let wrong = serde_json::json!({
            "schema": r#"{"type":"record","name":"Other","namespace":"acme","fields":[]}"#
        })
        .to_string();
        let (url, server) = fake_registry(vec![(200, wrong.clone()), (200, wrong)])?;
        let mut registry = SchemaRegistry::new(&format!("{url}/"));
        let mut ctx = ctx()?;
        let start = Instant::now();
        let expected = Rejection::new(
            reject::UNKNOWN_SCHEMA,
            "Confluent schema id 9 is record acme.Other, not flowlake.FlowEvent",
        );
        assert_eq!(registry.resolve(9, &mut ctx, start), Err(expected.clone()));
        let later = start + UNKNOWN_SCHEMA_TTL - Duration::from_millis(1);
        assert_eq!(registry.resolve(9, &mut ctx, later), Err(expected.clone()));
        // Expired: asked again.
        let expired = start + UNKNOWN_SCHEMA_TTL;
        assert_eq!(registry.resolve(9, &mut ctx, expired), Err(expected));
        assert_eq!(
            server.join().map_err(|_| "server panicked")?,
            vec!["GET /schemas/ids/9 HTTP/1.1"; 2]
        );
        Ok(())
    }

    #[test]
    fn not_found_and_other_schema_types_are_unknown() -> TestResult {
        let protobuf =
            serde_json::json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"});
        let (url, server) = fake_registry(vec![
            (
                404,
                r#"{"error_code":40403,"message":"Schema not found"}"#.to_owned(),
            ),
            (200, protobuf.to_string()),
            (500, r#"{"error_code":50001,"message":"oops"}"#.to_owned()),
        ])?;
        let mut registry = SchemaRegistry::new(&url);
        let mut ctx = ctx()?;
        let now = Instant::now();
        let err = |r: Result<(), Rejection>| r.err().map(|r| (r.class, r.message));
        assert_eq!(
            err(registry.resolve(1, &mut ctx, now)),
            Some((
                reject::UNKNOWN_SCHEMA,
                "Confluent schema id 1: the Schema Registry has no such schema (404)".to_owned()
            ))
        );
        assert_eq!(
            err(registry.resolve(2, &mut ctx, now)),
            Some((
                reject::UNKNOWN_SCHEMA,
                "Confluent schema id 2 is a PROTOBUF schema, not Avro flowlake.FlowEvent"
                    .to_owned()
            ))
        );
        assert_eq!(
            err(registry.resolve(3, &mut ctx, now)),
            Some((
                reject::SCHEMA_REGISTRY_UNAVAILABLE,
                "Confluent schema id 3: Schema Registry lookup failed (HTTP status 500); the \
                 record is intact, replay it from the DLQ once the registry answers"
                    .to_owned()
            ))
        );
        server.join().map_err(|_| "server panicked")?;
        Ok(())
    }
}
