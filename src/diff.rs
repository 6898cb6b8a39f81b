//! Unified diffs for reports and error messages, through `similar`: plain
//! text (no colour codes, whatever the output is), the changed lines with
//! their context, bounded in length.

/// Lines of diff kept; past it the rest is counted, not shown.
pub const MAX_LINES: usize = 400;

/// A unified diff of `old` and `new` (`--- old_name` / `+++ new_name`, `@@`
/// hunks with `context` unchanged lines around each change). Empty when the
/// texts are equal.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str, context: usize) -> String {
    let full = similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(context)
        .header(old_name, new_name)
        .to_string();
    let total = full.lines().count();
    if total <= MAX_LINES {
        return full;
    }
    let mut out: String = full
        .lines()
        .take(MAX_LINES)
        .flat_map(|l| [l, "\n"])
        .collect();
    out.push_str(&format!("... {} more diff lines\n", total - MAX_LINES));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_lines_with_context_and_no_escape_codes() {
        let old: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        let new = old.replace("line 10\n", "line ten\n");
        let d = unified(&old, &new, "want", "got", 2);
        assert_eq!(
            d,
            "--- want\n+++ got\n@@ -8,5 +8,5 @@\n line 8\n line 9\n-line 10\n+line ten\n line 11\n line 12\n"
        );
        assert!(!d.contains('\u{1b}'));
        assert_eq!(unified(&old, &old, "a", "b", 3), "");
    }

    #[test]
    fn a_long_diff_is_cut() {
        let old: String = (0..1000).map(|i| format!("{i}\n")).collect();
        let new: String = (0..1000).map(|i| format!("x{i}\n")).collect();
        let d = unified(&old, &new, "a", "b", 3);
        assert_eq!(d.lines().count(), MAX_LINES + 1);
        assert!(d.ends_with(&format!("... {} more diff lines\n", 2003 - MAX_LINES)));
    }
}
