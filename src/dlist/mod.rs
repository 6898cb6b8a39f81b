//! The csync wire format: framing and the `dlist` grammar. Sans-IO.
//!
//! This module never touches a socket, a clock or a thread. Bytes go in, frames and
//! values come out; values go in, bytes come out. The tokio driver in
//! [`crate::server`] feeds it.
//!
//! Grammar (as `imap/dlist.c` at `cyrus-imapd-3.6.1` prints and parses it):
//!
//! ```text
//! command  = verb [SP dlist-item] CRLF        ; GET and APPLY carry one item
//! item     = key SP value
//! value    = "%(" [key SP value *(SP key SP value)] ")"   ; kvlist
//!          / "(" [value *(SP value)] ")"                   ; list
//!          / "%{" partition SP guid SP size "}" CRLF <size bytes>   ; file
//!          / "{" n ["+"] "}" CRLF <n bytes>                ; literal
//!          / "\" atom                                      ; flag, printed raw
//!          / "NIL" / atom / quoted
//! ```
//!
//! Two layers, as in imap-codec: [`Framer`] finds where one command ends (a line
//! whose end is not a literal announcement) without looking at the grammar, and
//! enforces the size limits; [`decode`] then parses one complete frame. "Need more
//! bytes" is an ordinary outcome of the framer (`Ok(None)`), never an error.
//!
//! Literal direction matters: the client sends `{n+}`; a server must send `{n}`
//! only, because the Debian 3.6.1 client rejects `{n+}` from a server
//! (`docs/sync-protocol.md` §2.4). [`encode`] takes the direction as an argument.

mod decode;
mod encode;
mod frame;
mod value;

pub use decode::{decode_value, DecodeError, Parser, DEPTH_MAX, VALUES_MAX};
pub use encode::{encode_value, write_astring, Direction};
pub use frame::{FrameError, Framer, Limits};
pub use value::{File, Key, Value};
