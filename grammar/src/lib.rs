//! mgc's allocation language.
//!
//! An allocation string says how much of a model each device holds:
//! `cuda:0,2.5gb;cuda:1,3g;cpu,*` (bytes), `cuda:0,25%;cpu,75%` (shares of the model),
//! `cuda:0,0.5;cpu,0.2` (fractions of each device's memory), or a bare `0.8` (a fraction of the
//! compute device). [`parse_allocation`] turns one into a typed [`Allocation`] whose every part
//! carries its [`Span`], or into every [`AllocationError`] the string has.
//!
//! This crate is also where a user's string becomes a unit, exactly once: [`parse_size`],
//! [`parse_bandwidth`] and [`parse_device`] read the sizes, bandwidths and devices of a workflow
//! file with the same rules. The unit types themselves are `mgc-core`'s.

mod ast;
mod error;
mod parser;

pub use ast::{Allocation, Amount, Entry, Mode, Note, Target, VirtualVram};
pub use error::{AllocationError, AllocationErrorKind};
pub use parser::{parse_allocation, parse_bandwidth, parse_device, parse_size};
