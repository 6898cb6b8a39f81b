//! The integration tests: one binary, one module per topic.

mod cyrus_source; // the real Cyrus source instance: start, fill, read back, stop
mod util;
