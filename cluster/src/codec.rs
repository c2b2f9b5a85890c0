//! The one binary codec between nodes: postcard over serde.
//!
//! postcard is compact, maintained and has no schema step; it is not self-describing, so
//! types sent between nodes use plain (externally tagged) serde representations. Frames
//! that are already JSON for clients travel as strings.

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode: {0}")]
    Encode(postcard::Error),
    #[error("cannot decode: {0}")]
    Decode(postcard::Error),
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_stdvec(value).map_err(CodecError::Encode)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    postcard::from_bytes(bytes).map_err(CodecError::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Sample {
        Text { id: u64, body: String },
        Empty,
    }

    #[test]
    fn round_trips_and_refuses_garbage() {
        let value = Sample::Text { id: 7, body: "hello".to_owned() };
        let bytes = encode(&value).unwrap();
        assert_eq!(decode::<Sample>(&bytes).unwrap(), value);
        assert!(decode::<Sample>(&bytes[..bytes.len() - 2]).is_err(), "truncated");
        assert!(decode::<Sample>(&[0xff, 0xff, 0xff]).is_err(), "garbage");
    }
}
