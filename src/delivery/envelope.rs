//! The wire form of what the agent sends: an event's envelope written here (the SDK's
//! format: headers, item header with its length, the event with its breadcrumbs, see
//! [`Report`]), a check-in's by the SDK's own envelope code; then gzipped with one
//! compressor reused for every envelope (a fresh one per ~2 KB envelope cost more than the
//! rest of the work).

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use sentry::Envelope;
#[cfg(test)]
use sentry::protocol::Event;
use sentry::protocol::{EnvelopeHeaders, EnvelopeItem, MonitorCheckIn};

use super::outcome::DropReason;
use crate::report::Report;

/// Relay rejects envelopes with an event item larger than this.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

/// The envelope of one event, as the SDK builds it.
#[cfg(test)]
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
    /// An event item, written before its header (which carries its length).
    item: Vec<u8>,
    /// The compressed form, before it is copied into a body of its own size.
    packed: Vec<u8>,
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
            item: Vec::with_capacity(16 * 1024),
            packed: Vec::with_capacity(8 * 1024),
            // Level 1 (zlib-rs's "quick": fixed Huffman codes, no trees to build): on a
            // 5 KiB event envelope with 20 breadcrumbs, 6.8 µs against level 2's 15.6 µs
            // (3.5 µs of either is the reset, which clears a 128 KiB hash table), for a
            // fifth more bytes (650 against 540). CPU is what the agent is tuned for.
            deflate: Compress::new(Compression::new(1), false),
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
        Ok(self.gzip())
    }

    /// The gzipped envelope of one event: what [`Envelope::to_writer`] writes for it, with
    /// the breadcrumbs serialised from the trail's entries (see [`Report`]).
    pub fn encode_event(&mut self, report: &Report) -> Result<Bytes, DropReason> {
        use std::io::Write;
        self.item.clear();
        if serde_json::to_writer(&mut self.item, report).is_err() {
            return Err(DropReason::Rejected);
        }
        if self.item.len() > MAX_ENVELOPE_BYTES {
            return Err(DropReason::TooLarge);
        }
        self.raw.clear();
        let headers = EnvelopeHeaders::new().with_event_id(report.event.event_id);
        serde_json::to_writer(&mut self.raw, &headers).map_err(|_| DropReason::Rejected)?;
        // Writing into memory cannot fail.
        let _ = writeln!(
            self.raw,
            "\n{{\"type\":\"event\",\"length\":{}}}",
            self.item.len()
        );
        self.raw.extend_from_slice(&self.item);
        self.raw.push(b'\n');
        Ok(self.gzip())
    }

    /// RFC 1952: a fixed header, raw deflate, then the CRC-32 and length of the input.
    /// Compressed into a reused buffer, then copied into a body of exactly its size: a
    /// queued body holds no spare capacity (a burst queues up to `SENTRY_K8S_QUEUE_SIZE`).
    fn gzip(&mut self) -> Bytes {
        const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        let input = &self.raw;
        let out = &mut self.packed;
        out.clear();
        out.extend_from_slice(&HEADER);
        self.deflate.reset();
        loop {
            let consumed = self.deflate.total_in() as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(input.len() / 4 + 64);
            }
            let status = self
                .deflate
                .compress_vec(&input[consumed..], out, FlushCompress::Finish)
                .expect("deflating into memory cannot fail");
            if status == Status::StreamEnd {
                break;
            }
        }
        let mut crc = Crc::new();
        crc.update(input);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
        Bytes::copy_from_slice(out)
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
    fn an_events_envelope_is_what_the_sdk_writes_for_it() {
        use crate::breadcrumbs::{Crumb, CrumbText};
        use std::sync::Arc;
        let crumb = |at: &str, warning| {
            Arc::new(Crumb::new(
                at.parse().unwrap(),
                warning,
                2,
                CrumbText {
                    reason: "BackOff",
                    message: "Back-off restarting failed container",
                    kind: "Pod",
                    name: "web-1",
                    event_uid: "e1",
                },
            ))
        };
        let event = Event {
            message: Some("web-1: Back-off restarting failed container".into()),
            ..Default::default()
        };
        let report = Report::new(
            event,
            None,
            vec![
                crumb("2026-11-29T11:00:00Z", false),
                crumb("2026-11-29T11:30:00.5Z", true),
            ],
            "2026-11-29T12:00:00Z".parse().unwrap(),
        );
        let ours = gunzip(&Encoder::new().encode_event(&report).unwrap());
        let mut sdks = Vec::new();
        of_event(report.to_event()).to_writer(&mut sdks).unwrap();
        let lines = |body: &[u8]| -> Vec<Vec<u8>> {
            body.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
        };
        let (ours_lines, sdks_lines) = (lines(&ours), lines(&sdks));
        assert_eq!(ours_lines.len(), sdks_lines.len());
        assert_eq!(ours_lines[0], sdks_lines[0], "envelope headers");
        assert_eq!(ours_lines[1], sdks_lines[1], "item header and length");
        let json = |line: &[u8]| serde_json::from_slice::<serde_json::Value>(line).unwrap();
        assert_eq!(json(&ours_lines[2]), json(&sdks_lines[2]), "the event");
        assert!(Envelope::from_slice(&ours).is_ok(), "the SDK reads it back");
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
        let before_1970 = Report::new(
            Event {
                timestamp: std::time::UNIX_EPOCH - std::time::Duration::from_secs(1),
                ..Default::default()
            },
            None,
            Vec::new(),
            chrono::Utc::now(),
        );
        assert_eq!(
            encoder.encode_event(&before_1970),
            Err(DropReason::Rejected)
        );
        let mut huge = Event::default();
        huge.extra
            .insert("blob".into(), "x".repeat(2 * MAX_ENVELOPE_BYTES).into());
        assert_eq!(
            encoder.encode_event(&Report::new(huge, None, Vec::new(), chrono::Utc::now())),
            Err(DropReason::TooLarge)
        );
        assert!(
            encoder.encode(&of_event(Event::default())).is_ok(),
            "the next one goes"
        );
    }
}
