//! The log: `--log-level` checked before use, colour only on a terminal and never with
//! `NO_COLOR`, lines written to stderr around the terminal's progress bar.

use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::ProgressBar;

/// The levels a `--log-level` directive may name.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// An unusable `--log-level`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --log-level '{value}': {why} (use error, warn, info, debug, trace, off, or a filter such as info,verack=debug)")]
pub struct LogLevelError {
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub why: String,
}

/// Checks a log filter: comma-separated directives, each a level (`info`) or `target=level`
/// (`verack=debug`, `verack[span{field=1}]=trace`), levels as in [`LEVELS`] in any case. A
/// bare word that is not a level is refused: `tracing` would read it as a target name and
/// show nothing else, silently. Returns the filter with spaces around directives removed.
///
/// # Errors
/// [`LogLevelError`] naming the value and the first bad directive.
pub fn check_filter(value: &str) -> Result<String, LogLevelError> {
    let fail = |why: String| LogLevelError {
        value: value.to_string(),
        why,
    };
    if value.trim().is_empty() {
        return Err(fail("empty".into()));
    }
    let directives: Vec<&str> = value.split(',').map(str::trim).collect();
    for &directive in &directives {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) => {
                if target.trim().is_empty() {
                    return Err(fail(format!("'{directive}' has no target before '='")));
                }
                level
            }
            None => directive,
        };
        if directive.is_empty() {
            return Err(fail("empty directive".into()));
        }
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level.trim())) {
            return Err(fail(format!("'{}' is not a level", level.trim())));
        }
    }
    let normalized = directives.join(",");
    tracing_subscriber::EnvFilter::try_new(&normalized).map_err(|e| fail(e.to_string()))?;
    Ok(normalized)
}

/// Whether log lines get ANSI colours: only on a terminal, and not when `NO_COLOR` is set
/// to anything but the empty string (<https://no-color.org>).
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The terminal's progress bar, if one is drawn: log lines are written with it suspended.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Sets (or with `None` removes) the progress bar log lines must be written around.
pub fn set_bar(bar: Option<ProgressBar>) {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = bar;
}

/// stderr, with the progress bar (if any) cleared while a line is written and redrawn after.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar
                .suspend(|| std::io::stderr().write_all(buf))
                .map(|()| buf.len()),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Installs the global subscriber: `filter` (checked by [`check_filter`]), colour as
/// [`use_colour`] decides from stderr and `NO_COLOR`, lines to [`Stderr`].
///
/// # Errors
/// As [`check_filter`].
pub fn init(filter: &str) -> Result<(), LogLevelError> {
    let filter = check_filter(filter)?;
    let env_filter =
        tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| LogLevelError {
            value: filter.to_string(),
            why: e.to_string(),
        })?;
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(colour)
        .with_writer(|| Stderr)
        .init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_filters_pass() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "verack=debug",
            "info,verack=trace",
            "warn, verack_node=debug",
            "verack[peer{id=1}]=trace",
        ] {
            assert!(check_filter(ok).is_ok(), "{ok}: {:?}", check_filter(ok));
        }
    }

    #[test]
    fn spaces_between_directives_are_dropped() {
        assert_eq!(
            check_filter(" warn, verack_node=debug ").unwrap(),
            "warn,verack_node=debug"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let e = check_filter("lots").unwrap_err();
        assert_eq!(e.value, "lots");
        assert_eq!(
            e.to_string(),
            "invalid --log-level 'lots': 'lots' is not a level (use error, warn, info, debug, trace, off, or a filter such as info,verack=debug)"
        );
        assert!(check_filter("").is_err());
        assert!(check_filter("info,").is_err());
        assert!(check_filter("verack=loud")
            .unwrap_err()
            .why
            .contains("'loud'"));
        assert!(check_filter("=debug").is_err());
        assert!(
            check_filter("verack").is_err(),
            "a bare target shows nothing else"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(
            use_colour(true, Some(OsStr::new(""))),
            "empty NO_COLOR is unset"
        );
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }
}
