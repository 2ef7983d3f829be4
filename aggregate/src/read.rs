//! Reads what the fold needs of an `EnrichedFlow` datum — the key's fields, the counters,
//! the times — borrowed from the message, without decoding the record.
//!
//! Decoding the whole `EnrichedFlow` allocates some thirty strings and two label maps per
//! flow, of which the fold keeps none once the edge exists: it was most of the stage's
//! processing time. This reader walks the datum through the visitors generated from the
//! schema (`EnrichedFlowVisitor`, `FlowEventVisitor`, `EndpointVisitor`,
//! `PolicyHitVisitor`): it names the fields it keeps, and the generated walker reads every
//! other field in schema order, checking it exactly as the full decoder would. So a datum
//! this reader accepts is one the decoder accepts, and it splits into the same
//! [`Folded`] as the decoded flow does ([`Folded::from_flow`]); the tests below hold both
//! to that.

use flowlake_schemas::binary::{AvroBinary, ReadError, Reader};
use flowlake_schemas::{
    Action, AvroRecord, CodecError, Endpoint, EndpointKind, EndpointVisitor, EnrichedFlow,
    EnrichedFlowVisitor, FlowEvent, FlowEventVisitor, PolicyHit, PolicyHitVisitor, Reporter,
    Timestamp,
};

use crate::edge::{EndpointParts, FlowParts, Folded, policy_name};

/// Splits one `EnrichedFlow` datum (without framing) into what the fold keeps; fails with
/// the error the decoder gives for the same datum.
pub fn read_folded(datum: &[u8]) -> Result<Folded<'_>, CodecError> {
    let mut visit = FlowVisit {
        flow: FlowParts {
            cluster_id: "",
            reporter: Reporter::default(),
            action: Action::default(),
            dst_port: None,
            protocol: None,
            policy: None,
            connections_started: 0,
            connections_completed: 0,
            bytes_out: 0,
            bytes_in: 0,
            packets_out: 0,
            packets_in: 0,
            start_time: Timestamp::default(),
            end_time: Timestamp::default(),
        },
        src: EndpointVisit::default(),
        dst: EndpointVisit::default(),
    };
    let r = &mut Reader::new(datum);
    EnrichedFlow::visit_avro(r, &mut visit).map_err(|source| CodecError::MalformedDatum {
        record: EnrichedFlow::NAME,
        source,
    })?;
    if !r.remaining().is_empty() {
        return Err(CodecError::TrailingBytes {
            record: EnrichedFlow::NAME,
            count: r.remaining().len(),
        });
    }
    Ok(Folded::new(visit.flow, visit.src.0, visit.dst.0))
}

struct FlowVisit<'a> {
    flow: FlowParts<'a>,
    src: EndpointVisit<'a>,
    dst: EndpointVisit<'a>,
}

impl<'a> EnrichedFlowVisitor<'a> for FlowVisit<'a> {
    #[inline]
    fn flow(&mut self, r: &mut Reader<'a>, _field: &'static str) -> Result<(), ReadError> {
        FlowEvent::visit_avro(r, &mut self.flow)
    }

    #[inline]
    fn src(&mut self, r: &mut Reader<'a>, _field: &'static str) -> Result<(), ReadError> {
        Endpoint::visit_avro(r, &mut self.src)
    }

    #[inline]
    fn dst(&mut self, r: &mut Reader<'a>, _field: &'static str) -> Result<(), ReadError> {
        Endpoint::visit_avro(r, &mut self.dst)
    }
}

impl<'a> FlowEventVisitor<'a> for FlowParts<'a> {
    #[inline]
    fn cluster_id(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.cluster_id = r.str(field)?;
        Ok(())
    }

    #[inline]
    fn reporter(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.reporter = Reporter::read_avro(r, field)?;
        Ok(())
    }

    #[inline]
    fn start_time(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.start_time = Timestamp::read_avro(r, field)?;
        Ok(())
    }

    #[inline]
    fn end_time(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.end_time = Timestamp::read_avro(r, field)?;
        Ok(())
    }

    #[inline]
    fn dst_port(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.dst_port = Option::<i32>::read_avro(r, field)?;
        Ok(())
    }

    #[inline]
    fn protocol(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.protocol = Option::<i32>::read_avro(r, field)?;
        Ok(())
    }

    #[inline]
    fn action(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.action = Action::read_avro(r, field)?;
        Ok(())
    }

    #[inline]
    fn bytes_out(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.bytes_out = r.long(field)?;
        Ok(())
    }

    #[inline]
    fn bytes_in(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.bytes_in = r.long(field)?;
        Ok(())
    }

    #[inline]
    fn packets_out(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.packets_out = r.long(field)?;
        Ok(())
    }

    #[inline]
    fn packets_in(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.packets_in = r.long(field)?;
        Ok(())
    }

    #[inline]
    fn connections_started(
        &mut self,
        r: &mut Reader<'a>,
        field: &'static str,
    ) -> Result<(), ReadError> {
        self.connections_started = r.long(field)?;
        Ok(())
    }

    #[inline]
    fn connections_completed(
        &mut self,
        r: &mut Reader<'a>,
        field: &'static str,
    ) -> Result<(), ReadError> {
        self.connections_completed = r.long(field)?;
        Ok(())
    }

    /// The deciding policy is the last one enforced.
    #[inline]
    fn policies_enforced(
        &mut self,
        r: &mut Reader<'a>,
        field: &'static str,
    ) -> Result<(), ReadError> {
        let mut last = None;
        r.blocks(field, 6, |r| {
            let mut hit = PolicyVisit::default();
            PolicyHit::visit_avro(r, &mut hit)?;
            last = Some(hit);
            Ok(())
        })?;
        self.policy = last.and_then(|hit| policy_name(hit.tier, hit.namespace, hit.name));
        Ok(())
    }
}

#[derive(Default)]
struct PolicyVisit<'a> {
    tier: Option<&'a str>,
    namespace: Option<&'a str>,
    name: &'a str,
}

impl<'a> PolicyHitVisitor<'a> for PolicyVisit<'a> {
    #[inline]
    fn tier(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.tier = r.optional_str(field)?;
        Ok(())
    }

    #[inline]
    fn namespace(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.namespace = r.optional_str(field)?;
        Ok(())
    }

    #[inline]
    fn name(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.name = r.str(field)?;
        Ok(())
    }
}

struct EndpointVisit<'a>(EndpointParts<'a>);

impl Default for EndpointVisit<'_> {
    fn default() -> Self {
        EndpointVisit(EndpointParts {
            kind: EndpointKind::Unknown,
            namespace: None,
            name: None,
            pod_uid: None,
            workload_name: None,
            aggregated_name: None,
            node: None,
            service_namespace: None,
            service_name: None,
            network_set: None,
            first_dns_name: None,
        })
    }
}

/// One method per optional string the key reads.
macro_rules! optional_strs {
    ($($name:ident),* $(,)?) => {$(
        #[inline]
        fn $name(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
            self.0.$name = r.optional_str(field)?;
            Ok(())
        }
    )*};
}

impl<'a> EndpointVisitor<'a> for EndpointVisit<'a> {
    #[inline]
    fn kind(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.0.kind = EndpointKind::read_avro(r, field)?;
        Ok(())
    }

    optional_strs!(
        namespace,
        name,
        pod_uid,
        workload_name,
        aggregated_name,
        node,
        service_namespace,
        service_name,
        network_set,
    );

    #[inline]
    fn dns_names(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        let mut first = None;
        r.blocks(field, 1, |r| {
            let name = r.str(field)?;
            first.get_or_insert(name);
            Ok(())
        })?;
        self.0.first_dns_name = first;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use flowlake_schemas::binary::AvroBinary;
    use flowlake_schemas::{EnrichedFlow, PolicyHit, samples};
    use proptest::prelude::*;

    use super::read_folded;
    use crate::edge::{EdgeKey, Folded};

    fn datum(flow: &EnrichedFlow) -> Vec<u8> {
        let mut out = Vec::new();
        flow.write_avro(&mut out);
        out
    }

    /// Strings that exercise the key: empty, with `/`, ordinary.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), Just("a/b".to_owned()), "[a-c]{1,3}"]
    }

    fn optional() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(text())
    }

    prop_compose! {
        fn endpoint(base: flowlake_schemas::Endpoint)(
            kind in 0usize..8,
            strings in proptest::collection::vec(optional(), 10),
            dns in proptest::collection::vec(text(), 0..3),
        ) -> flowlake_schemas::Endpoint {
            use flowlake_schemas::EndpointKind::*;
            let mut e = base.clone();
            e.kind = [Pod, Node, Service, Host, NetworkSet, ExternalPublic, ExternalPrivate, Unknown][kind];
            let mut s = strings.into_iter();
            let mut next = || s.next().flatten();
            e.namespace = next();
            e.name = next();
            e.pod_uid = next();
            e.workload_name = next();
            e.aggregated_name = next();
            e.node = next();
            e.service_namespace = next();
            e.service_name = next();
            e.network_set = next();
            e.workload_kind = next();
            e.dns_names = dns;
            e
        }
    }

    prop_compose! {
        fn policy()(tier in optional(), namespace in optional(), name in text()) -> PolicyHit {
            PolicyHit { tier, namespace, name, ..PolicyHit::default() }
        }
    }

    prop_compose! {
        fn flow()(
            src in endpoint(samples::enriched_flow().src),
            dst in endpoint(samples::enriched_flow().dst),
            policies in proptest::collection::vec(policy(), 0..3),
            port in proptest::option::of(0i32..70000),
            counters in proptest::array::uniform6(any::<i64>()),
        ) -> EnrichedFlow {
            let mut flow = samples::enriched_flow();
            flow.src = src;
            flow.dst = dst;
            flow.flow.policies_enforced = policies;
            flow.flow.dst_port = port;
            let [a, b, c, d, e, f] = counters;
            flow.flow.connections_started = a;
            flow.flow.connections_completed = b;
            flow.flow.bytes_out = c;
            flow.flow.bytes_in = d;
            flow.flow.packets_out = e;
            flow.flow.packets_in = f;
            flow
        }
    }

    proptest! {
        /// The reader splits a datum exactly as the decoded flow splits.
        #[test]
        fn reads_what_the_decoded_flow_splits_into(flow in flow()) {
            let bytes = datum(&flow);
            let read = read_folded(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let decoded = Folded::from_flow(&flow);
            prop_assert_eq!(EdgeKey::from(&read.key), EdgeKey::from(&decoded.key));
            prop_assert!(hashbrown::Equivalent::equivalent(&read.key, &EdgeKey::from(&decoded.key)));
            prop_assert_eq!(read.value, decoded.value);
            prop_assert_eq!(read.src_pod, decoded.src_pod);
        }

        /// A damaged datum is refused exactly when the decoder refuses it.
        #[test]
        fn refuses_exactly_what_the_decoder_refuses(flow in flow(), cut in any::<prop::sample::Index>(), byte in any::<u8>(), at in any::<prop::sample::Index>()) {
            let mut bytes = datum(&flow);
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let bytes = &bytes[..cut.index(bytes.len() + 1)];
            let decoded = EnrichedFlow::read_avro(&mut flowlake_schemas::binary::Reader::new(bytes), "EnrichedFlow");
            let decoded_whole = decoded.as_ref().ok().is_some() && {
                let mut r = flowlake_schemas::binary::Reader::new(bytes);
                let _ = EnrichedFlow::read_avro(&mut r, "EnrichedFlow");
                r.remaining().is_empty()
            };
            prop_assert_eq!(read_folded(bytes).is_ok(), decoded_whole);
            if let (Ok(read), Ok(decoded)) = (read_folded(bytes), decoded) {
                prop_assert_eq!(EdgeKey::from(&read.key), EdgeKey::from(&Folded::from_flow(&decoded).key));
            }
        }
    }
}
