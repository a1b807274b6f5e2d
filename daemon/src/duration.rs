//! Parsing of human durations for command-line flags: `90`, `10s`, `500ms`, `2m`, `1h`.

use std::time::Duration;

/// A text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// No number where one was expected.
    #[error("`{0}` is not a duration (try 10s, 500ms, 2m)")]
    NotANumber(String),
    /// A unit other than ms, s, m, h.
    #[error("unknown unit `{unit}` in `{text}` (use ms, s, m or h)")]
    UnknownUnit {
        /// The unit given.
        unit: String,
        /// The whole text.
        text: String,
    },
    /// Zero, negative or not finite.
    #[error("`{0}`: the duration must be positive")]
    NotPositive(String),
}

/// Parses a duration; a bare number is seconds.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError::NotANumber(text.to_string()))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(DurationError::UnknownUnit {
                unit: other.to_string(),
                text: text.to_string(),
            })
        }
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(DurationError::NotPositive(text.to_string()));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_rejects_nonsense() {
        assert_eq!(parse("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse("0s").is_err());
        assert!(parse("ten").is_err());
        assert!(parse("5 parsecs").is_err());
        assert!(parse("").is_err());
    }
}
