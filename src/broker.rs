//! `flowlake broker`: librdkafka's mock cluster (`rdkafka::mocking::MockCluster`) served from
//! a process of its own, so that separate stage processes, Python clients and test helpers
//! can share one Kafka-API broker that behaves like Kafka when a client crashes: a consumer
//! resuming inside a producer batch gets the rest of it, and a SIGKILLed group member is
//! expired after its session timeout.
//!
//! Protocol with whoever starts it: once the cluster is up and its topics exist, two lines
//! go to stdout — `bootstrap=HOST:PORT[,HOST:PORT…]` and `control=http://127.0.0.1:PORT` —
//! then nothing more. The control port takes `POST /brokers/{id}/down`, `…/up` and
//! `…/rtt/{ms}` (`id` is 1..=N, or `all`) to simulate broker outages and slow brokers; a
//! broker that is down closes its connections and refuses new ones, and keeps its port and
//! its data for when it comes back up. `POST /topics/{name}/{partitions}` creates a topic
//! (the mock cluster does not implement the CreateTopics request). The cluster lives in memory only: it is gone when the
//! process stops (SIGTERM or SIGINT).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use rdkafka::mocking::MockCluster;
use tokio::sync::{mpsc, oneshot};

/// Arguments of `flowlake broker`.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// Brokers in the cluster (ids 1..=N), each on its own random loopback port.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=16))]
    brokers: i32,
    /// A topic to create before the addresses are printed, as NAME:PARTITIONS (repeatable).
    /// Topics a client asks for that do not exist are auto-created with 4 partitions.
    #[arg(long = "topic", value_name = "NAME:PARTITIONS", value_parser = parse_topic)]
    topics: Vec<TopicSpec>,
    /// Replication factor of the topics created with --topic (at most --brokers).
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Address of the control port (HTTP, no authentication: loopback addresses only);
    /// port 0 picks a free port, printed as `control=…`.
    #[arg(long, default_value = "127.0.0.1:0")]
    control_listen: SocketAddr,
}

/// A topic given with `--topic NAME:PARTITIONS`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TopicSpec {
    name: String,
    partitions: i32,
}

fn parse_topic(value: &str) -> Result<TopicSpec, String> {
    let (name, partitions) = value
        .rsplit_once(':')
        .ok_or_else(|| format!("{value:?}: expected NAME:PARTITIONS, e.g. flows.raw:4"))?;
    if name.is_empty() {
        return Err(format!("{value:?}: the topic name is empty"));
    }
    let partitions: i32 = partitions
        .parse()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| format!("{value:?}: partitions must be a number from 1 to 10000"))?;
    Ok(TopicSpec {
        name: name.to_owned(),
        partitions,
    })
}

/// What the control port asks the cluster to do. The cluster handle is not `Send`, so the
/// HTTP handlers pass these to the task that owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    /// Close the broker's connections and refuse new ones (its port and data are kept).
    Down,
    /// Accept connections again.
    Up,
    /// Delay every response of the broker by this much.
    RoundTrip(Duration),
    /// Create a topic with this many partitions (the broker id is ignored).
    CreateTopic(TopicSpec),
}

/// One request from the control port, with where to send the outcome.
type Request = (i32, Action, oneshot::Sender<Result<(), String>>);

/// Runs `flowlake broker` until SIGTERM or SIGINT.
pub async fn run(args: BrokerArgs) -> anyhow::Result<()> {
    if !args.control_listen.ip().is_loopback() {
        anyhow::bail!(
            "--control-listen {}: the control port has no authentication; use a loopback address",
            args.control_listen
        );
    }
    if !(1..=args.brokers).contains(&args.replication_factor) {
        anyhow::bail!(
            "--replication-factor {} must be between 1 and --brokers ({})",
            args.replication_factor,
            args.brokers
        );
    }
    let shutdown = flowlake_runtime::shutdown::on_signals();
    let cluster = MockCluster::new(args.brokers).context("starting the mock cluster")?;
    for topic in &args.topics {
        cluster
            .create_topic(&topic.name, topic.partitions, args.replication_factor)
            .with_context(|| format!("creating topic {}", topic.name))?;
    }

    let (requests, mut incoming) = mpsc::channel::<Request>(16);
    let listener = tokio::net::TcpListener::bind(args.control_listen)
        .await
        .with_context(|| format!("binding the control port {}", args.control_listen))?;
    let control = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/brokers/{id}/down", post(down))
        .route("/brokers/{id}/up", post(up))
        .route("/brokers/{id}/rtt/{ms}", post(round_trip))
        .route("/topics/{name}/{partitions}", post(create_topic))
        .with_state(Control {
            requests,
            brokers: args.brokers,
        });
    let server_stop = shutdown.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(server_stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            eprintln!("flowlake broker: control port stopped: {e}");
        }
    });

    // The two lines callers wait for; stdout is a pipe in tests, so flush explicitly.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "bootstrap={}", cluster.bootstrap_servers())?;
        writeln!(out, "control=http://{control}")?;
        out.flush()?;
    }
    eprintln!(
        "flowlake broker: {} mock broker(s) at {}, control at http://{control}; stop with SIGTERM",
        args.brokers,
        cluster.bootstrap_servers()
    );

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            request = incoming.recv() => {
                let Some((broker, action, reply)) = request else { break };
                let outcome = apply(&cluster, broker, &action, args.replication_factor);
                match &outcome {
                    Ok(()) => eprintln!("flowlake broker: broker {} {action:?}", name(broker)),
                    Err(e) => eprintln!("flowlake broker: broker {} {action:?} failed: {e}", name(broker)),
                }
                let _ = reply.send(outcome);
            }
        }
    }
    eprintln!("flowlake broker: stopping");
    Ok(())
}

fn name(broker: i32) -> String {
    if broker < 0 {
        "all".to_owned()
    } else {
        broker.to_string()
    }
}

fn apply(
    cluster: &MockCluster<'_, impl rdkafka::ClientContext>,
    broker: i32,
    action: &Action,
    replication_factor: i32,
) -> Result<(), String> {
    let done = match action {
        Action::Down => cluster.broker_down(broker),
        Action::Up => cluster.broker_up(broker),
        Action::RoundTrip(delay) => cluster.broker_round_trip_time(broker, *delay),
        Action::CreateTopic(topic) => {
            cluster.create_topic(&topic.name, topic.partitions, replication_factor)
        }
    };
    done.map_err(|e| e.to_string())
}

#[derive(Clone)]
struct Control {
    requests: mpsc::Sender<Request>,
    brokers: i32,
}

impl Control {
    /// `all` → -1 (librdkafka's "every broker"), else a broker id of this cluster.
    fn broker_id(&self, id: &str) -> Result<i32, (StatusCode, String)> {
        if id == "all" {
            return Ok(-1);
        }
        id.parse::<i32>()
            .ok()
            .filter(|n| (1..=self.brokers).contains(n))
            .ok_or_else(|| {
                (
                    StatusCode::NOT_FOUND,
                    format!("no broker {id:?}: ids are 1..={} or all\n", self.brokers),
                )
            })
    }

    async fn send(&self, id: &str, action: Action) -> (StatusCode, String) {
        let broker = match self.broker_id(id) {
            Ok(broker) => broker,
            Err(refused) => return refused,
        };
        let (reply, outcome) = oneshot::channel();
        let done = format!("broker {id} {action:?}\n");
        if self.requests.send((broker, action, reply)).await.is_err() {
            return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n".to_owned());
        }
        match outcome.await {
            Ok(Ok(())) => (StatusCode::OK, done),
            Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n".to_owned()),
        }
    }
}

async fn down(State(control): State<Control>, Path(id): Path<String>) -> (StatusCode, String) {
    control.send(&id, Action::Down).await
}

async fn up(State(control): State<Control>, Path(id): Path<String>) -> (StatusCode, String) {
    control.send(&id, Action::Up).await
}

async fn round_trip(
    State(control): State<Control>,
    Path((id, ms)): Path<(String, u64)>,
) -> (StatusCode, String) {
    control
        .send(&id, Action::RoundTrip(Duration::from_millis(ms)))
        .await
}

async fn create_topic(
    State(control): State<Control>,
    Path((name, partitions)): Path<(String, String)>,
) -> (StatusCode, String) {
    match parse_topic(&format!("{name}:{partitions}")) {
        Ok(topic) => control.send("all", Action::CreateTopic(topic)).await,
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_as_name_and_partitions() {
        assert_eq!(
            parse_topic("flows.raw:4"),
            Ok(TopicSpec {
                name: "flows.raw".into(),
                partitions: 4
            })
        );
        // The last colon separates: names may not hold one in Kafka, but say so clearly.
        assert!(parse_topic("flows.raw").is_err());
        assert!(parse_topic(":4").is_err());
        assert!(parse_topic("t:0").is_err());
        assert!(parse_topic("t:four").is_err());
    }

    #[test]
    fn control_names_brokers_of_this_cluster_only() {
        let (requests, _incoming) = mpsc::channel(1);
        let control = Control {
            requests,
            brokers: 3,
        };
        assert_eq!(control.broker_id("all"), Ok(-1));
        assert_eq!(control.broker_id("3"), Ok(3));
        assert!(control.broker_id("0").is_err());
        assert!(control.broker_id("4").is_err());
        assert!(control.broker_id("-1").is_err());
    }
}
