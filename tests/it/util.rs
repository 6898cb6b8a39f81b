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

/// A scripted csync client over TCP: connects, authenticates as
/// `repluser`/`secret`, sends each line and collects the final reply lines
/// (`OK …`, `NO …`, or `<closed>` when the server dropped the connection, after
/// which it reconnects for the next line). Every read has a 5 s deadline.
pub fn run_script(addr: std::net::SocketAddr, lines: &[&str]) -> Vec<String> {
    use base64::Engine;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    fn connect(addr: std::net::SocketAddr) -> (BufReader<TcpStream>, TcpStream) {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                r.read_line(&mut line).expect("greeting") > 0,
                "closed during greeting"
            );
            if line.starts_with("* OK") {
                break;
            }
        }
        (r, s)
    }
    fn final_line(r: &mut BufReader<TcpStream>) -> Option<String> {
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) if line.starts_with("* ") => continue,
                Ok(_) => return Some(line.trim_end().to_owned()),
            }
        }
    }
    let auth = format!(
        "AUTHENTICATE PLAIN {}\r\n",
        base64::engine::general_purpose::STANDARD.encode("\0repluser\0secret")
    );
    let mut conn: Option<(BufReader<TcpStream>, TcpStream)> = None;
    let mut out = Vec::new();
    for l in lines {
        let (r, w) = conn.get_or_insert_with(|| {
            let (mut r, mut w) = connect(addr);
            w.write_all(auth.as_bytes()).expect("auth");
            assert_eq!(
                final_line(&mut r).as_deref(),
                Some("OK Success (no protection)")
            );
            (r, w)
        });
        let sent = w
            .write_all(l.as_bytes())
            .and_then(|()| w.write_all(b"\r\n"));
        match sent.ok().and_then(|()| final_line(r)) {
            Some(reply) => out.push(reply),
            None => {
                out.push("<closed>".into());
                conn = None;
            }
        }
    }
    out
}

/// The chroot installation of Cyrus `version` (`3.10`, `3.12`) that
/// `backupd-sim cyrus install` built in its cache (`$BACKUPD_SIM_CYRUS_CACHE`,
/// else `/var/cache/backupd-sim/cyrus`).
///
/// Missing: skipped with a printed reason, unless `CI=true` or
/// `BACKUPD_SIM_REQUIRE_CYRUS=1` (`make test` installs both first): then the
/// test fails.
pub fn chroot_bins(version: &str) -> Option<CyrusBins> {
    use backupd_sim::cyrus::install;
    let cache = install::cache_dir();
    match CyrusBins::resolve(version, &cache) {
        Ok(b) => Some(b),
        Err(e) => {
            let required = std::env::var("CI").is_ok_and(|v| v == "true")
                || std::env::var("BACKUPD_SIM_REQUIRE_CYRUS").is_ok_and(|v| v == "1");
            if required {
                panic!(
                    "Cyrus {version} is required here (CI=true or BACKUPD_SIM_REQUIRE_CYRUS=1; \
                     `make test` installs it with `backupd-sim cyrus install {version}`): {e}"
                );
            }
            eprintln!("skipped: no Cyrus {version} chroot: {e}");
            None
        }
    }
}

/// `APPLY MESSAGE` carrying these bodies, with their true GUIDs.
pub fn message_cmd(bodies: &[&[u8]]) -> Vec<u8> {
    let mut out = b"APPLY MESSAGE (".to_vec();
    for (i, b) in bodies.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(
            format!(
                "%{{default {} {}}}\r\n",
                backupd_sim::store::sha1_hex(b),
                b.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(b);
    }
    out.extend_from_slice(b")\r\n");
    out
}

/// `APPLY MAILBOX` for `name` with every field backupd requires, shaped like
/// the 3.6.1 client's (`a-01.txt`); `records` are `(uid, guid, flags)`.
pub fn mailbox_cmd(uniqueid: &str, name: &str, records: &[(u32, &str, &str)]) -> String {
    let owner = name.split('.').nth(1).unwrap_or("alice");
    let last_uid = records.iter().map(|r| r.0).max().unwrap_or(0);
    let recs: Vec<String> = records
        .iter()
        .map(|(uid, guid, flags)| {
            format!(
                "%(UID {uid} MODSEQ {m} LAST_UPDATED 1795874858 FLAGS ({flags}) \
                 INTERNALDATE 1795874858 SIZE 5 GUID {guid})",
                m = uid + 1
            )
        })
        .collect();
    format!(
        "APPLY MAILBOX %(UNIQUEID {uniqueid} MBOXNAME {name} SYNC_CRC 1 SYNC_CRC_ANNOT 2 \
         LAST_UID {last_uid} HIGHESTMODSEQ {hms} RECENTUID 0 RECENTTIME 0 \
         LAST_APPENDDATE 1795874858 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0 \
         UIDVALIDITY 1795874859 PARTITION default ACL \"{owner}\tlrswipkxtecdan\t\" \
         OPTIONS P CREATEDMODSEQ 1 FOLDERMODSEQ 1 RECORD ({recs}))",
        hms = last_uid + 10,
        recs = recs.join(" ")
    )
}
