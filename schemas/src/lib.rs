//! flowlake's records and their Avro codecs.
//!
//! The `.avsc` files in `avro/` are the source of truth; the structs in [`records`] mirror
//! them field for field, and tests fail if the two drift. Stages exchange these records on
//! Kafka as Avro single-object encoding ([`codec`]); origin coordinates travel in headers,
//! not in the records.

pub mod binary;
pub mod codec;
pub mod labels;
pub mod records;
pub mod samples;
pub mod values;

pub use codec::{AvroCodec, AvroRecord, CodecError};
pub use records::*;
pub use values::{Ip, Timestamp};
