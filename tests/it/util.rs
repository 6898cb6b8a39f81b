//! Helpers shared by the integration tests.

use backupd_sim::cyrus::{CyrusBins, DEFAULT_CYRUS_BIN};

/// The Cyrus installation the tests drive: `$CYRUS_BIN` or the Debian default.
///
/// When it is missing, a test that needs it is skipped with a printed reason,
/// unless `CI=true` or `BACKUPD_SIM_REQUIRE_CYRUS=1`: then it fails, so CI can
/// never pass by skipping.
pub fn cyrus_bins() -> Option<CyrusBins> {
    let dir = std::env::var("CYRUS_BIN").unwrap_or_else(|_| DEFAULT_CYRUS_BIN.into());
    match CyrusBins::locate(&dir) {
        Ok(b) => Some(b),
        Err(e) => {
            let required = std::env::var("CI").is_ok_and(|v| v == "true")
                || std::env::var("BACKUPD_SIM_REQUIRE_CYRUS").is_ok_and(|v| v == "1");
            if required {
                panic!("Cyrus is required here (CI=true or BACKUPD_SIM_REQUIRE_CYRUS=1): {e}");
            }
            eprintln!("skipped: no Cyrus in `{dir}`: {e}");
            None
        }
    }
}
