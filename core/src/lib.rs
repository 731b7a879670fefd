//! mgc's vocabulary, shared by every crate: [`Device`], [`Bytes`], [`Bandwidth`], [`Span`].
//!
//! Users' strings become these types in one place only, the grammar (`mgc-grammar`); plans,
//! profiles and other files that mgc writes itself are read back through their canonical forms
//! here.

mod device;
mod span;
mod units;

pub use device::{Device, DeviceKind, NotADevice};
pub use span::{Span, Spanned};
pub use units::{Bandwidth, ByteUnit, Bytes, Decimal};
