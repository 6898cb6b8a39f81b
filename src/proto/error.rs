//! [`ParseError`]: a command that does not parse, and the exact reply real
//! backupd gives to it.

use crate::dlist::DecodeError;

use super::Reply;

/// A command that does not parse, and what backupd answers to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// `BAD Null command`.
    #[error("empty command")]
    NullCommand,
    /// `BAD Missing required argument to <Verb>`.
    #[error("`{verb}` needs an argument")]
    MissingArgument {
        /// Verb in backupd's case (`Get`, `Apply`).
        verb: &'static str,
    },
    /// `BAD Unexpected extra arguments to <Verb>`.
    #[error("unexpected extra arguments to `{verb}`")]
    ExtraArguments {
        /// Verb in backupd's case.
        verb: &'static str,
    },
    /// The dlist does not parse: `BAD IMAP_PROTOCOL_ERROR <detail>`.
    #[error("malformed {verb}: {source}")]
    Malformed {
        /// Verb in backupd's case.
        verb: &'static str,
        /// Where and what.
        source: DecodeError,
    },
    /// A field is missing or of the wrong type: backupd answers
    /// `NO IMAP_PROTOCOL_ERROR Protocol error` (its `Bad parameters` comes
    /// only from indexing an `APPLY MAILBOX`, checked after the lock).
    #[error("bad fields in `{key}`: {detail}")]
    BadFields {
        /// The item key.
        key: String,
        /// What is wrong.
        detail: String,
    },
}

impl ParseError {
    /// True for a GET or APPLY (backupd checks authentication before parsing
    /// their arguments).
    pub fn needs_auth(&self) -> bool {
        match self {
            ParseError::NullCommand => false,
            ParseError::MissingArgument { verb }
            | ParseError::ExtraArguments { verb }
            | ParseError::Malformed { verb, .. } => matches!(*verb, "Get" | "Apply"),
            ParseError::BadFields { .. } => true,
        }
    }

    /// The reply real backupd gives.
    pub fn reply(&self) -> Reply {
        match self {
            ParseError::NullCommand => Reply::Bad("Null command".into()),
            ParseError::MissingArgument { verb } => {
                Reply::Bad(format!("Missing required argument to {verb}"))
            }
            ParseError::ExtraArguments { verb } => {
                Reply::Bad(format!("Unexpected extra arguments to {verb}"))
            }
            // backupd says this when its dlist parse fails, whatever the cause.
            ParseError::Malformed { verb, .. } => {
                Reply::Bad(format!("Missing required argument to {verb}"))
            }
            ParseError::BadFields { .. } => Reply::protocol_error(),
        }
    }
}
