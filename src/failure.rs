//! How `ehrs` ends when it cannot do its job. A failure says what failed, with the value
//! (the address, the database, the path), and the setting that fixes it; its kind is the
//! exit code, so a script or a service manager can tell a typo in the settings from a
//! database that is down:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | done |
//! | 1 | any other failure |
//! | 2 | usage: a wrong flag or argument, or input the command needs and did not get |
//! | 3 | configuration: a setting or key is missing or invalid |
//! | 4 | database: it cannot be reached, opened or migrated |
//! | 5 | cannot listen on `EHRS_BIND` |
//!
//! The table is also in docs/operations.md and in `ehrs --help`.

use std::fmt;

/// What kind of thing failed, and so the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Usage = 2,
    Configuration = 3,
    Database = 4,
    Listen = 5,
}

/// A failure a person can act on: put it on an `anyhow::Error` with [`Failed::failed`].
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    message: String,
    hint: Option<String>,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    /// What to do about it, naming the setting or flag.
    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Puts a [`Failure`] on top of an error, keeping the error as its cause.
pub trait Failed<T> {
    fn failed(self, failure: impl FnOnce() -> Failure) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> Failed<T> for Result<T, E> {
    fn failed(self, failure: impl FnOnce() -> Failure) -> anyhow::Result<T> {
        self.map_err(|err| err.into().context(failure()))
    }
}

/// An error as the command line tells it: the message, each cause once, the hint, and
/// the exit code.
#[derive(Debug, PartialEq)]
pub struct Report {
    pub message: String,
    pub causes: Vec<String>,
    pub hint: Option<String>,
    pub exit_code: u8,
}

impl Report {
    pub fn of(err: &anyhow::Error) -> Report {
        // A failure is put on top (`Failed::failed`, or returned as it is).
        let failure = err.downcast_ref::<Failure>();
        let mut causes: Vec<String> = Vec::new();
        for cause in err.chain().skip(1).map(|e| e.to_string()) {
            // Wrapped errors often repeat their source's words; say each thing once.
            if causes.last().is_none_or(|last| last != &cause) {
                causes.push(cause);
            }
        }
        Report {
            message: err.to_string(),
            causes,
            hint: failure.and_then(|f| f.hint.clone()),
            exit_code: failure.map_or(1, |f| f.kind as u8),
        }
    }

    /// Lines for a terminal: `error: …`, then `  because: …` and `  to fix: …`.
    pub fn text(&self) -> String {
        let mut text = format!("error: {}", self.message);
        for cause in &self.causes {
            text.push_str(&format!("\n  because: {cause}"));
        }
        if let Some(hint) = &self.hint {
            text.push_str(&format!("\n  to fix: {hint}"));
        }
        text
    }

    /// One JSON line, for `EHRS_LOG_FORMAT=json` (every line the program writes is JSON).
    pub fn json(&self) -> String {
        serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": "ERROR",
            "fields": {
                "message": self.message,
                "causes": self.causes,
                "hint": self.hint,
                "exit_code": self.exit_code,
            },
        })
        .to_string()
    }
}

/// A database URL fit to print: the password, if any, replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_gives_its_exit_code_causes_and_hint() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let err = Err::<(), _>(io)
            .failed(|| {
                Failure::new(Kind::Listen, "cannot listen on 127.0.0.1:8000").hint("set EHRS_BIND")
            })
            .unwrap_err();
        let report = Report::of(&err);
        assert_eq!(report.exit_code, 5);
        assert_eq!(report.message, "cannot listen on 127.0.0.1:8000");
        assert_eq!(report.causes, ["Address already in use"]);
        assert_eq!(
            report.text(),
            "error: cannot listen on 127.0.0.1:8000\n  because: Address already in use\n  to fix: set EHRS_BIND"
        );
        let line: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(line["fields"]["exit_code"], 5);
        assert_eq!(Report::of(&anyhow::anyhow!("plain")).exit_code, 1);
    }

    #[test]
    fn a_url_s_password_is_never_printed() {
        assert_eq!(
            redact_url("postgres://ehrs:s3cret@db.camp:5432/ehrs"),
            "postgres://ehrs:***@db.camp:5432/ehrs"
        );
        assert_eq!(
            redact_url("sqlite://./ehrs-data/ehrs.db"),
            "sqlite://./ehrs-data/ehrs.db"
        );
    }
}
