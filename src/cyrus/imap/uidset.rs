//! UID sets (`1`, `1:5`, `3,7:*`): checked before they go into a command,
//! and expanded when a server's COPYUID answers with one.

use super::{proto, Result};

/// Check a UID set (`1`, `1:5`, `3,7:*`): digits, `:`, `,` and `*` only.
pub(super) fn check_set(set: &str) -> Result<()> {
    if set.is_empty()
        || !set
            .bytes()
            .all(|b| b.is_ascii_digit() || b":,*".contains(&b))
    {
        return Err(proto(format!("invalid uid set `{set}`")));
    }
    Ok(())
}

/// A UID set of numbers (`3:5,9`) in the order written, ranges ascending as
/// RFC 4315 pairs them (`*` is refused: a server's COPYUID never sends it).
pub(super) fn expand_uid_set(set: &str) -> Result<Vec<u32>> {
    let bad = || proto(format!("invalid uid set `{set}`"));
    let mut out = Vec::new();
    for part in set.split(',') {
        let (a, b) = part.split_once(':').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        let (lo, hi) = (a.min(b), a.max(b));
        if hi - lo > 1_000_000 {
            return Err(bad());
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copyuid_sets_expand_in_order() {
        assert_eq!(expand_uid_set("3:5,9").expect("set"), vec![3, 4, 5, 9]);
        assert_eq!(expand_uid_set("7").expect("set"), vec![7]);
        assert!(expand_uid_set("1:*").is_err());
        assert!(expand_uid_set("1:4000000000").is_err());
    }

    #[test]
    fn a_set_with_other_characters_is_refused() {
        assert!(check_set("1:5,7:*").is_ok());
        assert!(check_set("").is_err());
        assert!(check_set("1 OR 2").is_err());
    }
}
