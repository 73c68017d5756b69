//! The switch's gRPC API, package `paymentswitch.v1`. Generated from the `.proto`
//! files in `proto/paymentswitch/v1/`; one file per service. Only `switch` (at its
//! edge), `pos-agent`, `loadtest` and `tests` use these types.

#![allow(clippy::all, missing_docs)]

pub mod auth;
pub mod offline;
pub mod pin;
pub mod tls;

pub mod v1 {
    tonic::include_proto!("paymentswitch.v1");
}

/// The encoded `FileDescriptorSet`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/switch_v1_descriptor.bin"));
