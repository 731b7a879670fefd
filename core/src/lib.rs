//! mgc's vocabulary, shared by every crate: [`Device`], [`Bytes`], [`Bandwidth`], [`Span`]; the
//! formats of the files mgc writes and reads back ([`profile`], [`hardware`]); bounded reads
//! ([`read`]) and safe writes ([`output`]).
//!
//! Users' strings become these types in one place only, the grammar (`mgc-grammar`); plans,
//! profiles and other files that mgc writes itself are read back through their canonical forms
//! here.

mod device;
pub mod hardware;
pub mod meminfo;
pub mod output;
pub mod profile;
pub mod read;
mod span;
mod units;

pub use device::{Device, DeviceKind, NotADevice};
pub use hardware::{DetectedDevice, Hardware};
pub use output::{Output, WriteError, write_output};
pub use read::{ReadError, read_text};
pub use span::{Span, Spanned};
pub use units::{Bandwidth, ByteUnit, Bytes, Decimal};
