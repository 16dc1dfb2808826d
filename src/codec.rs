//! [`Codec`]: how a value becomes bytes and back, for the components that
//! keep values outside the process's memory (the spill log, Redis).
//!
//! A codec is a value, not a trait on the item type, so one item type can be
//! stored in different formats and a format can carry settings. Built in:
//! [`Raw`] for `Vec<u8>`, [`Utf8`] for `String`, [`LittleEndian`] for the
//! primitive numbers, and `Json` for any `serde` type (feature `serde`).
//!
//! ```
//! use sheaf::codec::{Codec, LittleEndian, Utf8};
//!
//! let mut bytes = Vec::new();
//! LittleEndian.encode(&7u64, &mut bytes).unwrap();
//! assert_eq!(LittleEndian.decode(&bytes), Ok(7u64));
//!
//! bytes.clear();
//! Utf8.encode(&"héllo".to_string(), &mut bytes).unwrap();
//! assert_eq!(Utf8.decode(&bytes), Ok("héllo".to_string()));
//! assert!(Utf8.decode(&[0xff]).is_err());
//! ```

use std::fmt;

/// Encodes values of `T` to bytes and decodes them back.
///
/// `decode(encode(v)) == v` for every `v` a codec accepts. Decoding bytes
/// that no `encode` produced returns an error, never panics.
pub trait Codec<T>: Send + Sync {
    /// Appends the encoding of `value` to `out`.
    ///
    /// # Errors
    /// [`CodecError`] when the value cannot be represented in this format
    /// (for example a map with non-string keys in JSON). `out` may then hold
    /// a partial encoding; callers truncate it.
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes one value from all of `bytes`.
    ///
    /// # Errors
    /// [`CodecError`] when `bytes` is not a valid encoding.
    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// A value that could not be encoded, or bytes that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    message: String,
}

impl CodecError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> CodecError {
        CodecError {
            message: message.into(),
        }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "codec: {}", self.message)
    }
}

impl std::error::Error for CodecError {}

/// `Vec<u8>` as itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Raw;

impl Codec<Vec<u8>> for Raw {
    fn encode(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(value);
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
        Ok(bytes.to_vec())
    }
}

/// `String` as its UTF-8 bytes; decoding checks UTF-8.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8;

impl Codec<String> for Utf8 {
    fn encode(&self, value: &String, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<String, CodecError> {
        String::from_utf8(bytes.to_vec()).map_err(|e| CodecError::new(e.to_string()))
    }
}

/// Primitive numbers as their fixed-width little-endian bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LittleEndian;

macro_rules! little_endian {
    ($($t:ty),*) => {$(
        impl Codec<$t> for LittleEndian {
            fn encode(&self, value: &$t, out: &mut Vec<u8>) -> Result<(), CodecError> {
                out.extend_from_slice(&value.to_le_bytes());
                Ok(())
            }

            fn decode(&self, bytes: &[u8]) -> Result<$t, CodecError> {
                let array = bytes.try_into().map_err(|_| {
                    CodecError::new(format!(
                        "{} needs {} bytes, got {}",
                        stringify!($t),
                        std::mem::size_of::<$t>(),
                        bytes.len()
                    ))
                })?;
                Ok(<$t>::from_le_bytes(array))
            }
        }
    )*};
}

little_endian!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64);

/// Any `serde` type as JSON (feature `serde`): readable by tools that are
/// not sheaf, such as `redis-cli`.
#[cfg(feature = "serde")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Codec<T> for Json {
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serde_json::to_writer(out, value).map_err(|e| CodecError::new(e.to_string()))
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::new(e.to_string()))
    }
}

impl<T, C: Codec<T> + ?Sized> Codec<T> for std::sync::Arc<C> {
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        (**self).encode(value, out)
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        (**self).decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: PartialEq + fmt::Debug, C: Codec<T>>(codec: &C, value: T) {
        let mut bytes = Vec::new();
        codec.encode(&value, &mut bytes).unwrap();
        assert_eq!(codec.decode(&bytes).unwrap(), value);
    }

    #[test]
    fn built_in_codecs_round_trip() {
        round_trip(&Raw, vec![0u8, 1, 255]);
        round_trip(&Utf8, "ünïcode".to_string());
        round_trip(&LittleEndian, u64::MAX);
        round_trip(&LittleEndian, -5i32);
        round_trip(&LittleEndian, 1.5f64);
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert!(Codec::<u64>::decode(&LittleEndian, &[1, 2, 3]).is_err());
        assert!(Utf8.decode(&[0xc3]).is_err());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn json_round_trips() {
        round_trip(&Json, vec![(1u32, "a".to_string())]);
        assert!(Codec::<Vec<u32>>::decode(&Json, b"[1,").is_err());
    }
}
