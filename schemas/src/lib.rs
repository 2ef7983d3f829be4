//! flowlake's records and their Avro codecs.
//!
//! The `.avsc` files in `avro/` are the single source of each record's shape: the build
//! script (`build/`) generates the structs and enums in [`records`] from them, with their
//! Avro binary layout, so the two cannot drift. Stages exchange these records on Kafka as Avro single-object
//! encoding ([`codec`]); origin coordinates travel in headers, not in the records.
//!
//! Modules, each depending only on those listed before it: [`values`] and [`labels`] (the
//! value types), [`binary`] (the Avro binary encoding of values), [`records`] (generated),
//! [`view`] (enrich's partial read of a `FlowEvent`), [`codec`] (framing and schema
//! resolution), [`samples`].

pub mod binary;
pub mod codec;
pub mod labels;
pub mod records;
pub mod samples;
pub mod values;
pub mod view;

pub use codec::{AvroCodec, AvroRecord, CodecError};
pub use records::*;
pub use values::{Ip, Timestamp};
