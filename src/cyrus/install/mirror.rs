//! The Debian mirrors the host's apt uses (`/etc/apt/sources.list*`, deb822
//! or one-line format, `$DEBIAN_MIRROR`), read for debootstrap and for
//! `cyrus build`'s private `deb-src` index.

use std::fs;
use std::path::PathBuf;

/// The Debian mirror the host's apt uses: the first `URIs:` of a deb822
/// `.sources` file under `/etc/apt/sources.list.d/` whose suites are not a
/// `-security` one, else the first `deb URL` line of `/etc/apt/sources.list`
/// or `sources.list.d/*.list`. `$DEBIAN_MIRROR` overrides it.
pub fn host_mirror() -> Option<String> {
    if let Some(m) = std::env::var("DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
    {
        return Some(m);
    }
    let mut files: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|x| x == "sources"))
    {
        if let Ok(text) = fs::read_to_string(f) {
            if let Some(m) = mirror_from_deb822(&text) {
                return Some(m);
            }
        }
    }
    let mut lists = vec![PathBuf::from("/etc/apt/sources.list")];
    lists.extend(
        files
            .into_iter()
            .filter(|f| f.extension().is_some_and(|x| x == "list")),
    );
    for f in lists {
        if let Ok(text) = fs::read_to_string(&f) {
            if let Some(m) = mirror_from_list(&text) {
                return Some(m);
            }
        }
    }
    None
}

/// The Debian security mirror the host's apt uses (the `URIs:` of a deb822
/// stanza, or the URL of a `deb` line, whose suite ends in `-security`).
pub fn host_security_mirror() -> Option<String> {
    let mut files: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.insert(0, PathBuf::from("/etc/apt/sources.list"));
    files.into_iter().find_map(|f| {
        let text = fs::read_to_string(&f).ok()?;
        if f.extension().is_some_and(|x| x == "sources") {
            security_from_deb822(&text)
        } else if f.extension().is_some_and(|x| x == "list") {
            text.lines().find_map(|l| {
                let (url, suite) = deb_line(l)?;
                suite.ends_with("-security").then(|| url.to_owned())
            })
        } else {
            None
        }
    })
}

/// The `-security` mirror of a deb822 sources file.
pub fn security_from_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| deb822_field(stanza, name);
        let security = field("Suites").is_some_and(|s| s.contains("-security"));
        let enabled = field("Enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
        (security && enabled)
            .then(|| field("URIs"))
            .flatten()
            .and_then(|u| u.split_whitespace().next().map(str::to_owned))
    })
}

/// The first non-security `deb` mirror of a deb822 sources file.
pub fn mirror_from_deb822(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| deb822_field(stanza, name);
        let enabled = field("Enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
        let deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let security = field("Suites").is_some_and(|s| s.contains("-security"));
        if let (true, true, false, Some(uris)) = (enabled, deb, security, field("URIs")) {
            if let Some(u) = uris.split_whitespace().next() {
                return Some(u.to_owned());
            }
        }
    }
    None
}

/// The first non-security `deb URL SUITE` line of a one-line-style sources file.
pub fn mirror_from_list(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (url, suite) = deb_line(l)?;
        (!suite.contains("-security")).then(|| url.to_owned())
    })
}

/// The value of field `name` (any case) in one deb822 stanza.
fn deb822_field(stanza: &str, name: &str) -> Option<String> {
    stanza.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// (URL, suite) of a one-line `deb [options] URL SUITE …` line.
fn deb_line(l: &str) -> Option<(&str, &str)> {
    let mut words = l.split_whitespace().filter(|w| !w.starts_with('['));
    if words.next()? != "deb" {
        return None;
    }
    Some((words.next()?, words.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_from_both_source_formats() {
        let deb822 = "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_from_deb822(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let security_first = "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\nTypes: deb-src deb\nURIs: http://m.example/debian\nSuites: bookworm\n";
        assert_eq!(
            mirror_from_deb822(security_first).as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(mirror_from_deb822("Types: deb-src\nURIs: http://x\n"), None);
        let list = "# x\ndeb http://security.debian.org/ bookworm-security main\ndeb [arch=amd64] http://ftp.example/debian bookworm main\n";
        assert_eq!(
            mirror_from_list(list).as_deref(),
            Some("http://ftp.example/debian")
        );
        // The security mirror: the stanza whose suites are -security, if enabled.
        assert_eq!(
            security_from_deb822(deb822).as_deref(),
            Some("http://deb.debian.org/debian-security")
        );
        let disabled =
            "Types: deb\nURIs: http://sec.example\nSuites: bookworm-security\nEnabled: no\n";
        assert_eq!(security_from_deb822(disabled), None);
        assert_eq!(
            deb_line("deb [arch=amd64] http://u s main"),
            Some(("http://u", "s"))
        );
        assert_eq!(deb_line("deb-src http://u s main"), None);
    }
}
