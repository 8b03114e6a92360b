//! The wire form of what the agent sends: Sentry protocol types serialised by the SDK's own
//! envelope code, then gzipped with one compressor reused for every envelope (a fresh one
//! per ~2 KB envelope cost more than the rest of the work).

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use sentry::Envelope;
use sentry::protocol::{EnvelopeItem, Event, MonitorCheckIn};

use super::outcome::DropReason;

/// Relay rejects envelopes with an event item larger than this.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

/// The envelope of one event.
pub fn of_event(event: Event<'static>) -> Envelope {
    Envelope::from(event)
}

/// The envelope of one check-in.
pub fn of_check_in(check_in: MonitorCheckIn) -> Envelope {
    let mut envelope = Envelope::new();
    envelope.add_item(EnvelopeItem::MonitorCheckIn(check_in));
    envelope
}

/// Serialises and compresses envelopes, reusing its buffers and compressor state.
pub struct Encoder {
    raw: Vec<u8>,
    deflate: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        Self {
            raw: Vec::with_capacity(16 * 1024),
            deflate: Compress::new(Compression::fast(), false),
        }
    }

    /// The gzipped wire form of `envelope`, or why it cannot be sent: the SDK refused to
    /// serialise it, or it is larger than Sentry accepts.
    pub fn encode(&mut self, envelope: &Envelope) -> Result<Bytes, DropReason> {
        self.raw.clear();
        if envelope.to_writer(&mut self.raw).is_err() {
            return Err(DropReason::Rejected);
        }
        if self.raw.len() > MAX_ENVELOPE_BYTES {
            return Err(DropReason::TooLarge);
        }
        Ok(Bytes::from(self.gzip()))
    }

    /// RFC 1952: a fixed header, raw deflate, then the CRC-32 and length of the input.
    fn gzip(&mut self) -> Vec<u8> {
        const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        let input = &self.raw;
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        out.extend_from_slice(&HEADER);
        self.deflate.reset();
        loop {
            let consumed = self.deflate.total_in() as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(input.len() / 4 + 64);
            }
            let status = self
                .deflate
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Finish)
                .expect("deflating into memory cannot fail");
            if status == Status::StreamEnd {
                break;
            }
        }
        let mut crc = Crc::new();
        crc.update(input);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use sentry::protocol::MonitorCheckInStatus;

    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn envelopes_are_the_sdks_serialisation_gzipped_with_one_reused_compressor() {
        let mut encoder = Encoder::new();
        for n in 0..3 {
            let event = Event {
                message: Some(format!("web-{n}: Back-off restarting failed container")),
                ..Default::default()
            };
            let envelope = of_event(event);
            let body = encoder.encode(&envelope).unwrap();
            let mut expected = Vec::new();
            envelope.to_writer(&mut expected).unwrap();
            assert_eq!(gunzip(&body), expected, "envelope {n}");
        }
        let check_in = of_check_in(MonitorCheckIn {
            check_in_id: uuid::Uuid::nil(),
            monitor_slug: "nightly".into(),
            status: MonitorCheckInStatus::Ok,
            environment: None,
            duration: None,
            monitor_config: None,
        });
        let body = encoder.encode(&check_in).unwrap();
        assert!(
            String::from_utf8(gunzip(&body))
                .unwrap()
                .contains("\"monitor_slug\":\"nightly\"")
        );
    }

    #[test]
    fn oversized_and_unserialisable_envelopes_are_refused_alone() {
        let mut encoder = Encoder::new();
        let mut huge = Event::default();
        huge.extra
            .insert("blob".into(), "x".repeat(2 * MAX_ENVELOPE_BYTES).into());
        assert_eq!(encoder.encode(&of_event(huge)), Err(DropReason::TooLarge));
        let before_1970 = Event {
            timestamp: std::time::UNIX_EPOCH - std::time::Duration::from_secs(60),
            ..Default::default()
        };
        assert_eq!(
            encoder.encode(&of_event(before_1970)),
            Err(DropReason::Rejected)
        );
        assert!(
            encoder.encode(&of_event(Event::default())).is_ok(),
            "the next one goes"
        );
    }
}
