//! Slack: Block Kit messages for incidents ([`message`]), the HTTP client in
//! bot-token or incoming-webhook mode ([`client`]), delivering one incident's
//! events in order into one thread ([`delivery`]), verifying Slack's signed
//! requests ([`signature`]), reading the Events API and the `/incident` command
//! ([`events`]), and turning thread replies into timeline rows ([`thread`]).
//!
//! The daemon wires these into its durable job table and HTTP router: storage
//! and routing are not here.

pub mod client;
pub mod delivery;
pub mod events;
pub mod job;
pub mod message;
pub mod signature;
pub mod thread;

pub use client::{Mode, Posted, Retry, Secret, SlackClient, SlackError};
pub use delivery::{
    ChannelRoutes, Delivered, DeliveryError, Notifier, Progress, RootRef, Route, SlackState,
    StateError,
};
pub use message::{EvidenceFigure, LastFigure, Message, MessageSettings, SlackEvent};
pub use signature::{Interaction, InteractionAction, InteractionError, SignatureError};
