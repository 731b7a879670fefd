//! Model inventories (header readers) — see mod docs.
