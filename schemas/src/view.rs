//! [`FlowEventView`]: what enrich's fast path reads of a `FlowEvent` datum, without
//! decoding it.
//!
//! The view walks the whole datum through the visitors generated from the schema
//! ([`FlowEventVisitor`], [`EndpointHintVisitor`]): it names the fields it keeps, and the
//! generated walker reads every field in schema order, checking the ones the view skips
//! exactly as the full decoder would (UTF-8, enum ranges, IP lengths, union branches,
//! lengths). So a datum the view accepts is one `FlowEvent::read_avro` accepts, and can be
//! copied into an `EnrichedFlow` as it is. Nothing is allocated.

use crate::binary::{AvroBinary, ReadError, Reader};
use crate::records::{
    DnsObservation, EndpointHint, EndpointHintVisitor, FlowEvent, FlowEventVisitor,
    is_reserved_label,
};
use crate::values::{Ip, Timestamp};

/// What enrich's fast path reads of a `FlowEvent` datum, borrowed from the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEventView<'a> {
    /// `cluster_id`.
    pub cluster_id: &'a str,
    /// `start_time`.
    pub start_time: Timestamp,
    /// `end_time`.
    pub end_time: Timestamp,
    /// `src_ip`.
    pub src_ip: Option<Ip>,
    /// `dst_ip`.
    pub dst_ip: Option<Ip>,
    /// `src_hint`, when present.
    pub src_hint: Option<HintView<'a>>,
    /// `dst_hint`, when present.
    pub dst_hint: Option<HintView<'a>>,
    /// `dst_dns_names` is not empty.
    pub has_dst_dns_names: bool,
    /// `dns` is present.
    pub has_dns: bool,
}

impl<'a> FlowEventView<'a> {
    /// Reads and checks a whole `FlowEvent` datum (without framing).
    pub fn read(datum: &'a [u8]) -> Result<Self, ReadError> {
        Self::read_then(datum, |_, _, _| ()).map(|(view, ())| view)
    }

    /// [`Self::read`], calling `on_addresses` with `cluster_id`, `src_ip` and `dst_ip` as
    /// soon as all three are read (they come first), before the rest of the datum is
    /// checked: a caller that will look the addresses up can start loading what it needs,
    /// and the cache misses overlap with the checking. Returns what `on_addresses` returned
    /// too. The datum may still turn out not to read.
    pub fn read_then<R>(
        datum: &'a [u8],
        on_addresses: impl FnOnce(&'a str, Option<Ip>, Option<Ip>) -> R,
    ) -> Result<(Self, R), ReadError> {
        let mut visit = FlowVisit {
            view: FlowEventView {
                cluster_id: "",
                start_time: Timestamp::default(),
                end_time: Timestamp::default(),
                src_ip: None,
                dst_ip: None,
                src_hint: None,
                dst_hint: None,
                has_dst_dns_names: false,
                has_dns: false,
            },
            addresses_read: 0,
            on_addresses: Some(on_addresses),
            early: None,
        };
        let r = &mut Reader::new(datum);
        FlowEvent::visit_avro(r, &mut visit)?;
        if !r.remaining().is_empty() {
            return Err(ReadError {
                field: "FlowEvent",
                problem: "bytes left after the datum",
            });
        }
        match visit.early {
            Some(early) => Ok((visit.view, early)),
            // The walker visits every field once, so the hook has run.
            None => Err(ReadError {
                field: "FlowEvent",
                problem: "the schema lacks cluster_id, src_ip or dst_ip",
            }),
        }
    }
}

/// The view being read, and the hook waiting for the addresses.
struct FlowVisit<'a, F, R> {
    view: FlowEventView<'a>,
    /// How many of `cluster_id`, `src_ip`, `dst_ip` have been read.
    addresses_read: u8,
    on_addresses: Option<F>,
    early: Option<R>,
}

impl<'a, F, R> FlowVisit<'a, F, R>
where
    F: FnOnce(&'a str, Option<Ip>, Option<Ip>) -> R,
{
    /// Called after each of `cluster_id`, `src_ip` and `dst_ip`: runs the hook after the
    /// last of them, wherever the schema puts it.
    #[inline]
    fn address_read(&mut self) {
        self.addresses_read += 1;
        if self.addresses_read == 3
            && let Some(on_addresses) = self.on_addresses.take()
        {
            let view = &self.view;
            self.early = Some(on_addresses(view.cluster_id, view.src_ip, view.dst_ip));
        }
    }
}

impl<'a, F, R> FlowEventVisitor<'a> for FlowVisit<'a, F, R>
where
    F: FnOnce(&'a str, Option<Ip>, Option<Ip>) -> R,
{
    #[inline]
    fn cluster_id(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.view.cluster_id = r.str(field)?;
        self.address_read();
        Ok(())
    }

    #[inline]
    fn start_time(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.view.start_time = Timestamp::read_avro(r, field)?;
        Ok(())
    }

    #[inline]
    fn end_time(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.view.end_time = Timestamp::read_avro(r, field)?;
        Ok(())
    }

    #[inline]
    fn src_ip(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.view.src_ip = Option::<Ip>::read_avro(r, field)?;
        self.address_read();
        Ok(())
    }

    #[inline]
    fn dst_ip(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.view.dst_ip = Option::<Ip>::read_avro(r, field)?;
        self.address_read();
        Ok(())
    }

    #[inline]
    fn src_hint(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.view.src_hint = HintView::read(r, field)?;
        Ok(())
    }

    #[inline]
    fn dst_hint(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.view.dst_hint = HintView::read(r, field)?;
        Ok(())
    }

    #[inline]
    fn dst_dns_names(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        let mut names = 0usize;
        r.blocks(field, 1, |r| {
            names += 1;
            r.skip_str(field)
        })?;
        self.view.has_dst_dns_names = names > 0;
        Ok(())
    }

    #[inline]
    fn dns(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.view.has_dns = r.present(field)?;
        if self.view.has_dns {
            DnsObservation::skip_avro(r)?;
        }
        Ok(())
    }
}

/// What enrich's fast path reads of an `EndpointHint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HintView<'a> {
    /// The Service it names: (`service_namespace`, `service_name`) when it names one.
    pub service: Option<(Option<&'a str>, &'a str)>,
    /// Its labels say Cilium's `reserved:world`: what
    /// [`EndpointHint::has_reserved`]`("world")` says of the decoded hint.
    pub world: bool,
}

impl<'a> HintView<'a> {
    /// Reads an optional `EndpointHint`.
    fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Option<Self>, ReadError> {
        if !r.present(field)? {
            return Ok(None);
        }
        let mut visit = HintVisit::default();
        EndpointHint::visit_avro(r, &mut visit)?;
        Ok(Some(HintView {
            service: visit
                .service_name
                .map(|name| (visit.service_namespace, name)),
            world: visit.world_key || visit.reserved_value_is_world,
        }))
    }
}

#[derive(Default)]
struct HintVisit<'a> {
    /// Some key is `reserved:world` (or a dual-stack variant of it).
    world_key: bool,
    /// The last `reserved` key's value is `world`: the decoded labels keep the last value
    /// of a repeated key, and so does this.
    reserved_value_is_world: bool,
    service_namespace: Option<&'a str>,
    service_name: Option<&'a str>,
}

impl<'a> EndpointHintVisitor<'a> for HintVisit<'a> {
    #[inline]
    fn labels(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        // Labels are compared as bytes: a `&str` of each would cost a `from_utf8` call.
        r.blocks(field, 2, |r| {
            let key = r.str_bytes(field)?;
            let value = r.str_bytes(field)?;
            if key == b"reserved" {
                self.reserved_value_is_world = is_reserved_label(key, value, "world");
            } else {
                self.world_key |= is_reserved_label(key, value, "world");
            }
            Ok(())
        })
    }

    #[inline]
    fn service_namespace(
        &mut self,
        r: &mut Reader<'a>,
        field: &'static str,
    ) -> Result<(), ReadError> {
        self.service_namespace = r.optional_str(field)?;
        Ok(())
    }

    #[inline]
    fn service_name(&mut self, r: &mut Reader<'a>, field: &'static str) -> Result<(), ReadError> {
        self.service_name = r.optional_str(field)?;
        Ok(())
    }
}
