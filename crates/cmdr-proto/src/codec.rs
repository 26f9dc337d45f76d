//! Frame codecs: binary (big-endian `u32` length + postcard) and JSON lines. The size cap
//! is checked before anything is allocated for a frame; "need more bytes" is `Ok(None)`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::MAX_FRAME_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Binary,
    JsonLines,
}

impl Codec {
    /// The codec a connection uses, from its first byte.
    pub fn detect(first_byte: u8) -> Codec {
        if first_byte == b'{' {
            Codec::JsonLines
        } else {
            Codec::Binary
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// Encoding stopped at the limit, so the full length is not known.
    #[error("message exceeds the frame limit of {max} bytes")]
    TooLargeToSend { max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("could not encode message: {0}")]
    Encode(String),
}

/// Encodes one message as a complete frame of at most [`MAX_FRAME_LEN`] bytes.
pub fn encode<T: Serialize>(codec: Codec, message: &T) -> Result<Vec<u8>, ProtoError> {
    encode_within(codec, message, MAX_FRAME_LEN)
}

/// Encodes one message as a complete frame of at most `max` bytes (plus the length
/// prefix), e.g. [`crate::MAX_REPLY_LEN`] for what the daemon sends. Encoding stops as
/// soon as the frame passes `max`: a message too large to send never costs more memory
/// than `max`.
pub fn encode_within<T: Serialize>(
    codec: Codec,
    message: &T,
    max: usize,
) -> Result<Vec<u8>, ProtoError> {
    let too_large = || ProtoError::TooLargeToSend { max };
    match codec {
        Codec::Binary => {
            let mut frame = Capped::new(max.saturating_add(4));
            frame.bytes.extend_from_slice(&[0; 4]);
            let mut frame =
                postcard::serialize_with_flavor(message, frame).map_err(|e| match e {
                    postcard::Error::SerializeBufferFull => too_large(),
                    other => ProtoError::Encode(other.to_string()),
                })?;
            let len = u32::try_from(frame.len() - 4).map_err(|_| too_large())?;
            frame[..4].copy_from_slice(&len.to_be_bytes());
            Ok(frame)
        }
        Codec::JsonLines => {
            let mut frame = Capped::new(max);
            serde_json::to_writer(&mut frame, message).map_err(|e| {
                if e.is_io() {
                    too_large()
                } else {
                    ProtoError::Encode(e.to_string())
                }
            })?;
            let mut frame = frame.bytes;
            frame.push(b'\n');
            Ok(frame)
        }
    }
}

/// A buffer that refuses to grow past `max` bytes, for both encoders.
struct Capped {
    bytes: Vec<u8>,
    max: usize,
}

impl Capped {
    fn new(max: usize) -> Capped {
        Capped {
            bytes: Vec::new(),
            max,
        }
    }

    fn fits(&self, more: usize) -> bool {
        self.bytes.len().saturating_add(more) <= self.max
    }
}

impl postcard::ser_flavors::Flavor for Capped {
    type Output = Vec<u8>;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if !self.fits(data.len()) {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.bytes)
    }
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.fits(buf.len()) {
            return Err(std::io::Error::other("over the frame limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Accumulates bytes from a stream and yields complete messages. The codec is fixed by the
/// first byte unless given up front.
#[derive(Debug)]
pub struct FrameDecoder {
    codec: Option<Codec>,
    buf: Vec<u8>,
    max: usize,
}

impl FrameDecoder {
    /// A decoder that picks its codec from the first byte (the daemon's side).
    pub fn detecting() -> Self {
        FrameDecoder {
            codec: None,
            buf: Vec::new(),
            max: MAX_FRAME_LEN,
        }
    }

    pub fn new(codec: Codec) -> Self {
        FrameDecoder {
            codec: Some(codec),
            buf: Vec::new(),
            max: MAX_FRAME_LEN,
        }
    }

    /// A decoder for one codec that accepts frames of up to `max` bytes (a client reading
    /// the daemon's answers: [`crate::MAX_REPLY_LEN`]).
    pub fn with_max(codec: Codec, max: usize) -> Self {
        FrameDecoder {
            codec: Some(codec),
            buf: Vec::new(),
            max,
        }
    }

    pub fn codec(&self) -> Option<Codec> {
        self.codec
    }

    /// Appends bytes read from the stream. Callers read in bounded chunks, and `next`
    /// rejects an oversized frame as soon as its header (or `max` bytes of a line) is seen,
    /// so the buffer stays within `max` plus one chunk.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.codec.is_none()
            && let Some(first) = bytes.first()
        {
            self.codec = Some(Codec::detect(*first));
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub fn decode<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ProtoError> {
        let Some(codec) = self.codec else {
            return Ok(None);
        };
        match codec {
            Codec::Binary => {
                let Some(header) = self.buf.get(..4) else {
                    return Ok(None);
                };
                let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
                if len > self.max {
                    return Err(ProtoError::TooLarge { len, max: self.max });
                }
                if self.buf.len() < 4 + len {
                    return Ok(None);
                }
                let message = postcard::from_bytes(&self.buf[4..4 + len])
                    .map_err(|e| ProtoError::Malformed(e.to_string()));
                self.buf.drain(..4 + len);
                message.map(Some)
            }
            Codec::JsonLines => {
                let Some(end) = self.buf.iter().position(|b| *b == b'\n') else {
                    if self.buf.len() > self.max {
                        return Err(ProtoError::TooLarge {
                            len: self.buf.len(),
                            max: self.max,
                        });
                    }
                    return Ok(None);
                };
                if end > self.max {
                    return Err(ProtoError::TooLarge {
                        len: end,
                        max: self.max,
                    });
                }
                let message = serde_json::from_slice(&self.buf[..end])
                    .map_err(|e| ProtoError::Malformed(json_error(&e)));
                self.buf.drain(..=end);
                message.map(Some)
            }
        }
    }
}

/// serde_json's message, without echoing input (which could be anything).
fn json_error(err: &serde_json::Error) -> String {
    format!(
        "invalid JSON message ({:?} at line {}, column {})",
        err.classify(),
        err.line(),
        err.column()
    )
}
