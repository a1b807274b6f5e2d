//! A map key as decoded from the target.

use std::fmt;

use serde::{Serialize, Serializer};

/// A decoded map key. Variants keep a string `"1"` apart from an integer 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A string key, cut to the bytes copied when `truncated`.
    Str {
        /// The bytes copied, as text (invalid UTF-8 replaced).
        text: String,
        /// Whether the key was longer than what was copied.
        truncated: bool,
    },
    /// A signed integer.
    Signed(i64),
    /// An unsigned integer (and a nil interface key, as 0).
    Unsigned(u64),
    /// A pointer-shaped value (pointers, channels, functions, maps).
    Pointer(u64),
    /// A key of another type, identified by a hash of its bytes.
    Other {
        /// The key type's name (`main.point`), when the symbols name it.
        type_name: Option<String>,
        /// A hash of the bytes copied.
        hash: u64,
    },
    /// The key's memory could not be read.
    Unreadable,
}

impl fmt::Display for Key {
    /// String keys as they are (`…` when cut), integers in decimal, pointers
    /// in hex, other types as `TYPE#HASH` (12 hex digits).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str { text, truncated } => {
                f.write_str(text)?;
                if *truncated {
                    f.write_str("…")?;
                }
                Ok(())
            }
            Self::Signed(value) => write!(f, "{value}"),
            Self::Unsigned(value) => write!(f, "{value}"),
            Self::Pointer(value) => write!(f, "{value:#x}"),
            Self::Other { type_name, hash } => {
                let hex = format!("{hash:016x}");
                write!(
                    f,
                    "{}#{}",
                    type_name.as_deref().unwrap_or("key"),
                    &hex[..12]
                )
            }
            Self::Unreadable => f.write_str("(unreadable)"),
        }
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_as_reports_show_them() {
        let cut = Key::Str {
            text: "abc".into(),
            truncated: true,
        };
        assert_eq!(cut.to_string(), "abc…");
        assert_eq!(Key::Signed(-5).to_string(), "-5");
        assert_eq!(Key::Unsigned(4294967294).to_string(), "4294967294");
        assert_eq!(Key::Pointer(0xc000).to_string(), "0xc000");
        let other = Key::Other {
            type_name: Some("main.point".into()),
            hash: 0x0123_4567_89ab_cdef,
        };
        assert_eq!(other.to_string(), "main.point#0123456789ab");
        assert_eq!(Key::Unreadable.to_string(), "(unreadable)");
    }
}
