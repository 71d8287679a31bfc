//! The codec of every generated service and client: prost, with small per-stream buffers.
//!
//! tonic's default gives every stream an 8 KiB encode and an 8 KiB decode buffer up front. A
//! Nacos SDK connection holds one bi-stream open for its whole life, and Nacos messages are a
//! few hundred bytes, so 10 000 idle connections carried ~160 MiB of buffers that were never
//! more than a few percent full. Buffers still grow on demand for large messages.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Initial buffer of a stream: room for a typical Nacos message.
const BUFFER_SIZE: usize = 1024;
/// tonic's default: how much a server stream encodes before yielding to send.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// prost encoding with [`BUFFER_SIZE`] buffers.
#[derive(Debug, Clone, Copy)]
pub struct LeanCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self { _types: PhantomData }
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}
