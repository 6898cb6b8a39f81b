//! What the terminal gets: colour (`--color auto|always|never`, `NO_COLOR`)
//! and coloured verdicts. Reports written to files never carry colour.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::runner::Verdict;

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set to something non-empty or
    /// `TERM` is `dumb`.
    #[default]
    Auto,
    /// Always, even into pipes and files (`NO_COLOR` is overridden).
    Always,
    /// Never.
    Never,
}

static CHOICE: AtomicU8 = AtomicU8::new(0);

/// Set the process-wide choice (the CLI's `--color`).
pub fn set_color_choice(c: ColorChoice) {
    CHOICE.store(
        match c {
            ColorChoice::Auto => 0,
            ColorChoice::Always => 1,
            ColorChoice::Never => 2,
        },
        Ordering::Relaxed,
    );
}

/// The process-wide choice.
pub fn color_choice() -> ColorChoice {
    match CHOICE.load(Ordering::Relaxed) {
        1 => ColorChoice::Always,
        2 => ColorChoice::Never,
        _ => ColorChoice::Auto,
    }
}

/// Whether to colour a stream that is (or is not) a terminal, given the
/// choice and the environment (`NO_COLOR`, `TERM`).
pub fn resolve(
    choice: ColorChoice,
    is_terminal: bool,
    no_color: Option<&str>,
    term: Option<&str>,
) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal && no_color.is_none_or(str::is_empty) && term != Some("dumb")
        }
    }
}

fn env_says(is_terminal: bool) -> bool {
    resolve(
        color_choice(),
        is_terminal,
        std::env::var("NO_COLOR").ok().as_deref(),
        std::env::var("TERM").ok().as_deref(),
    )
}

/// Colour on stdout?
pub fn stdout_color() -> bool {
    env_says(std::io::stdout().is_terminal())
}

/// Colour on stderr?
pub fn stderr_color() -> bool {
    env_says(std::io::stderr().is_terminal())
}

/// `text` (a verdict, already padded) in the verdict's colour: green for
/// PASS, red for FAIL, XPASS and ERROR, yellow for XFAIL, dim for SKIP.
pub fn paint_verdict(v: Verdict, text: &str, color: bool) -> String {
    if !color {
        return text.to_owned();
    }
    let code = match v {
        Verdict::Pass => "32",
        Verdict::Fail | Verdict::Xpass | Verdict::Error => "1;31",
        Verdict::Xfail => "33",
        Verdict::Skip => "2",
    };
    // Colour the word, not the padding after it.
    let word = text.trim_end();
    format!("\x1b[{code}m{word}\x1b[0m{}", &text[word.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_and_choices() {
        assert!(resolve(ColorChoice::Auto, true, None, Some("xterm")));
        assert!(!resolve(ColorChoice::Auto, false, None, Some("xterm")));
        assert!(!resolve(ColorChoice::Auto, true, Some("1"), Some("xterm")));
        assert!(resolve(ColorChoice::Auto, true, Some(""), None));
        assert!(!resolve(ColorChoice::Auto, true, None, Some("dumb")));
        assert!(resolve(ColorChoice::Always, false, Some("1"), None));
        assert!(!resolve(ColorChoice::Never, true, None, None));
    }

    #[test]
    fn verdicts_are_painted_without_the_padding() {
        assert_eq!(
            paint_verdict(Verdict::Fail, "FAIL  ", true),
            "\x1b[1;31mFAIL\x1b[0m  "
        );
        assert_eq!(paint_verdict(Verdict::Pass, "PASS  ", false), "PASS  ");
    }
}
