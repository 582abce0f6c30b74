//! The incident domain: occurrences, correlation, lifecycle, timeline and durations.
//! Pure code: nothing here does I/O, and every function that needs the time takes it.

pub mod model;

pub use model::*;
