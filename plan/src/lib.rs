//! The plan format shared by the compiler, the runtime and the ComfyUI node pack.
//!
//! Only its version is fixed so far; the plan's types land with `mgc compile`. A plan whose
//! `format_version` differs from [`PLAN_VERSION`] is refused, never guessed at.

/// The version of the plan format this build reads and writes.
pub const PLAN_VERSION: u32 = 1;
