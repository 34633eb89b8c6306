//! serde's messages in JSON's words: a client sees `must be an integer, not the string
//! "54"`, never `invalid type: string "54", expected i64`. Every body and query value
//! that fails to deserialise is explained here, so the wording is the same wherever the
//! value came from.

/// What was wrong with one value, for [`super::FieldErrors::add_problem`].
#[derive(Debug, PartialEq)]
pub struct Problem {
    pub reason: String,
    /// The JSON type the field takes (`integer`, `number`, `string`, `boolean`, `array`,
    /// `object`), when the value was of another type.
    pub expected: Option<&'static str>,
    /// For a closed set of words: the ones accepted.
    pub allowed: Option<Vec<String>>,
}

impl Problem {
    fn reason(reason: impl Into<String>) -> Problem {
        Problem {
            reason: reason.into(),
            expected: None,
            allowed: None,
        }
    }

    /// A value outside a closed set of words.
    pub fn one_of(words: Vec<String>) -> Problem {
        Problem {
            reason: format!("must be one of {}", words.join(", ")),
            expected: None,
            allowed: Some(words),
        }
    }
}

/// Explains serde's message about a value. `given` is the raw text of a query parameter
/// (whose parse errors do not repeat it); body values are quoted by serde itself.
pub fn explain(message: &str, given: Option<&str>) -> Problem {
    if let Some(words) = allowed_words(message)
        && message.starts_with("unknown variant")
    {
        return Problem::one_of(words);
    }
    if let Some((got, expected)) = split(message, "invalid type: ") {
        return wrong_type(&describe_got(got), expected);
    }
    if let Some((got, expected)) = split(message, "invalid value: ") {
        return match integer_range(expected) {
            Some((min, max)) => Problem {
                reason: format!(
                    "must be an integer from {min} to {max}, not {}",
                    describe_got(got)
                ),
                expected: None,
                allowed: None,
            },
            None => Problem::reason(format!("must be {}", plain_expected(expected))),
        };
    }
    // A query value is text parsed with `FromStr`; its errors name neither the value nor
    // the type (e.g. "invalid digit found in string").
    let got = || match given {
        Some(text) => format!("the text {}", quoted(text)),
        None => "that value".to_string(),
    };
    match message {
        "invalid digit found in string"
        | "cannot parse integer from empty string"
        | "number too large to fit in target type"
        | "number too small to fit in target type" => Problem {
            reason: format!("must be an integer, not {}", got()),
            expected: Some("integer"),
            allowed: None,
        },
        "invalid float literal" => Problem {
            reason: format!("must be a number, not {}", got()),
            expected: Some("number"),
            allowed: None,
        },
        "provided string was not `true` or `false`" => Problem {
            reason: format!("must be true or false, not {}", got()),
            expected: Some("boolean"),
            allowed: None,
        },
        // Our own deserialisers write their messages for people already.
        other => Problem::reason(other.to_string()),
    }
}

/// `must be an integer, not the string "54"`, with `expected` set when the wanted type is
/// one of JSON's.
fn wrong_type(got: &str, expected: &str) -> Problem {
    match json_type(expected) {
        Some(kind) => Problem {
            reason: format!("must be {} {kind}, not {got}", article(kind)),
            expected: Some(kind),
            allowed: None,
        },
        // Our own deserialisers describe the text they read ("an RFC 3339 formatted date
        // and time string"): keep their words, and still name the JSON type.
        None => Problem {
            reason: format!("must be {}, not {got}", plain_expected(expected)),
            expected: expected.contains("string").then_some("string"),
            allowed: None,
        },
    }
}

/// `(got, expected)` of "`prefix`got, expected …".
fn split<'m>(message: &'m str, prefix: &str) -> Option<(&'m str, &'m str)> {
    message.strip_prefix(prefix)?.rsplit_once(", expected ")
}

/// JSON's name for what serde expected (a Rust type name, or serde's phrase).
fn json_type(expected: &str) -> Option<&'static str> {
    let expected = expected.trim();
    if integer_range(expected).is_some() {
        return Some("integer");
    }
    match expected {
        "f32" | "f64" => Some("number"),
        "a string" | "a borrowed string" | "a character" | "a char" | "string" => Some("string"),
        "a boolean" | "bool" => Some("boolean"),
        "a sequence" | "an array" | "a set" => Some("array"),
        "a map" => Some("object"),
        other if other.starts_with("struct ") || other.starts_with("a tuple") => {
            Some(if other.starts_with("struct ") {
                "object"
            } else {
                "array"
            })
        }
        _ => None,
    }
}

/// serde's phrase, with a Rust enum's name replaced by JSON's word for it.
fn plain_expected(expected: &str) -> String {
    if expected.starts_with("enum ") || expected.starts_with("variant identifier") {
        return "a string".to_string();
    }
    expected.to_string()
}

/// The bounds of a Rust integer type named by serde (`i64`, `u8`, …).
fn integer_range(expected: &str) -> Option<(i128, i128)> {
    Some(match expected.trim() {
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" | "i128" => (i64::MIN.into(), i64::MAX.into()),
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" | "u128" => (0, i64::MAX.into()),
        _ => return None,
    })
}

/// serde's description of the value it got, in JSON's words: `the string "54"`, `the
/// number 1.5`, `true`, `null`, `an array`, `an object`.
fn describe_got(got: &str) -> String {
    let ticked = |prefix: &str| {
        got.strip_prefix(prefix)
            .map(|rest| rest.trim_matches('`').to_string())
    };
    if let Some(text) = got.strip_prefix("string ") {
        let text = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        return format!("the string {}", quoted(text));
    }
    if let Some(number) = ticked("integer ").or_else(|| ticked("floating point ")) {
        return format!("the number {number}");
    }
    if let Some(value) = ticked("boolean ") {
        return value;
    }
    match got {
        "null" | "unit value" => "null".to_string(),
        "sequence" => "an array".to_string(),
        "map" => "an object".to_string(),
        other => other.to_string(),
    }
}

/// `"text"`, cut to 40 characters: enough to recognise, never a whole pasted record.
pub fn quoted(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        format!("\"{text}\"")
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("\"{cut}…\"")
    }
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The words of serde's "expected one of `a`, `b`", "expected `a` or `b`" or
/// "expected `a`" (an enum's variants or a struct's fields).
pub fn allowed_words(message: &str) -> Option<Vec<String>> {
    let list = message.split(", expected ").nth(1)?;
    let list = list.strip_prefix("one of ").unwrap_or(list);
    if !list.starts_with('`') {
        return None;
    }
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_types_become_json_types() {
        let cases = [
            (
                r#"invalid type: string "54", expected i64"#,
                r#"must be an integer, not the string "54""#,
                Some("integer"),
            ),
            (
                "invalid type: string \"hot\", expected f64",
                "must be a number, not the string \"hot\"",
                Some("number"),
            ),
            (
                "invalid type: string \"a\", expected a sequence",
                "must be an array, not the string \"a\"",
                Some("array"),
            ),
            (
                "invalid type: integer `5`, expected a string",
                "must be a string, not the number 5",
                Some("string"),
            ),
            (
                "invalid type: floating point `1.5`, expected u32",
                "must be an integer, not the number 1.5",
                Some("integer"),
            ),
            (
                "invalid type: null, expected a boolean",
                "must be a boolean, not null",
                Some("boolean"),
            ),
            (
                "invalid type: sequence, expected struct NewPatient",
                "must be an object, not an array",
                Some("object"),
            ),
            (
                "invalid type: map, expected a string",
                "must be a string, not an object",
                Some("string"),
            ),
        ];
        for (message, reason, expected) in cases {
            let problem = explain(message, None);
            assert_eq!(problem.reason, reason, "{message}");
            assert_eq!(problem.expected, expected, "{message}");
        }
    }

    #[test]
    fn out_of_range_integers_give_the_range() {
        let problem = explain("invalid value: integer `-1`, expected u32", None);
        assert_eq!(
            problem.reason,
            "must be an integer from 0 to 4294967295, not the number -1"
        );
    }

    #[test]
    fn every_shape_of_serde_s_variant_list_is_read() {
        for (message, words) in [
            (
                "unknown variant `ids`, expected `full` or `id_only`",
                vec!["full", "id_only"],
            ),
            (
                "unknown variant `x`, expected one of `a`, `b`, `c`",
                vec!["a", "b", "c"],
            ),
            ("unknown variant `x`, expected `a`", vec!["a"]),
        ] {
            let problem = explain(message, None);
            assert_eq!(problem.allowed.unwrap(), words, "{message}");
        }
        assert_eq!(
            allowed_words("unknown variant `x`, there are no variants"),
            None
        );
    }

    #[test]
    fn query_parse_errors_quote_the_given_text() {
        let problem = explain("invalid digit found in string", Some("abc"));
        assert_eq!(problem.reason, r#"must be an integer, not the text "abc""#);
        assert_eq!(problem.expected, Some("integer"));
    }

    #[test]
    fn long_values_are_cut() {
        let long = "x".repeat(100);
        let problem = explain(
            &format!("invalid type: string \"{long}\", expected i64"),
            None,
        );
        assert!(problem.reason.ends_with("…\""), "{}", problem.reason);
        assert!(problem.reason.len() < 100);
    }
}
