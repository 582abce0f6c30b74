//! Integration tests: the real router on a real port with a real SQLite file, driven over
//! real HTTP; the restart tests run the real binary.

mod drafts;
mod helpers;
mod incidents;
mod restart;
mod webhook;
