//! Integration tests: the real router on a real port with a real SQLite file, driven over
//! real HTTP; the restart tests run the real binary.

mod drafts;
mod evidence;
#[path = "../slack_fake/fake.rs"]
mod fake;
mod helpers;
mod incidents;
mod restart;
mod slack;
mod webhook;
