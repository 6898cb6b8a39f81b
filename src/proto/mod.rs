//! Typed csync commands and replies on top of [`crate::dlist`]. Sans-IO.
//!
//! [`Command::parse`] turns one frame into a [`Command`]; a frame that does not
//! parse becomes the exact reply real backupd gives ([`ParseError::reply`]).
//! [`Reply`] prints what a server sends.
//!
//! Files: `command` (the types, and what a command names), `parse` (a frame
//! into a command), `error` (what does not parse, and backupd's answer),
//! `reply`, `direct` (the direct `APPLY MAILBOX` decoder, checked against the
//! general one).

mod command;
pub mod direct;
mod error;
mod parse;
mod reply;

pub use crate::types::Annotation;
pub use command::{Apply, Command, Get, MailboxUpdate, RecordUpdate, SeenUpdate};
pub use error::ParseError;
pub use reply::Reply;
