//! Typed csync commands and replies on top of [`crate::dlist`]. Sans-IO.
//!
//! [`Command::parse`] turns one frame into a [`Command`]; a frame that does not
//! parse becomes the exact reply real backupd gives ([`ParseError::reply`]).
//! [`Reply`] prints what a server sends.

mod command;
pub mod direct;
mod reply;

pub use crate::types::Annotation;
pub use command::{Apply, Command, Get, MailboxUpdate, ParseError, RecordUpdate, SeenUpdate};
pub use reply::Reply;
