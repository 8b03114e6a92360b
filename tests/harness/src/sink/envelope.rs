//! Sentry envelope decoding: content encodings, the envelope framing, auth keys.

use std::io::Read;

use serde_json::Value;

/// Undoes `Content-Encoding` (gzip, deflate, br, identity).
pub fn decode_body(encoding: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let result = match encoding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => return Ok(body.to_vec()),
        "gzip" | "x-gzip" => flate2::read::GzDecoder::new(body).read_to_end(&mut out),
        // HTTP "deflate" is the zlib format.
        "deflate" => flate2::read::ZlibDecoder::new(body).read_to_end(&mut out),
        "br" => brotli::Decompressor::new(body, 4096).read_to_end(&mut out),
        other => return Err(format!("unsupported content encoding {other:?}")),
    };
    result
        .map(|_| out)
        .map_err(|e| format!("cannot decode {encoding} body: {e}"))
}

/// One envelope item: its headers and its payload (JSON when it parses, else a string).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Item {
    pub headers: Value,
    pub payload: Value,
}

impl Item {
    pub fn item_type(&self) -> &str {
        self.headers["type"].as_str().unwrap_or("")
    }
}

fn parse_json_line(line: &[u8], what: &str) -> Result<Value, String> {
    serde_json::from_slice(line).map_err(|e| format!("invalid {what}: {e}"))
}

fn payload_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Splits an envelope into its headers and items, honouring explicit `length`s.
pub fn parse(body: &[u8]) -> Result<(Value, Vec<Item>), String> {
    let (header_line, mut rest) = match body.iter().position(|b| *b == b'\n') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &[][..]),
    };
    let headers = parse_json_line(header_line, "envelope header")?;
    let mut items = Vec::new();
    while !rest.is_empty() {
        let (item_header, after) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        if item_header.iter().all(u8::is_ascii_whitespace) {
            rest = after;
            continue;
        }
        let item_headers = parse_json_line(item_header, "item header")?;
        let (payload, after_payload) = match item_headers.get("length").and_then(Value::as_u64) {
            Some(len) => {
                let len = len as usize;
                if after.len() < len {
                    return Err(format!(
                        "item length {len} exceeds the {} bytes left",
                        after.len()
                    ));
                }
                let tail = &after[len..];
                (&after[..len], tail.strip_prefix(b"\n").unwrap_or(tail))
            }
            None => match after.iter().position(|b| *b == b'\n') {
                Some(i) => (&after[..i], &after[i + 1..]),
                None => (after, &[][..]),
            },
        };
        items.push(Item {
            headers: item_headers,
            payload: payload_value(payload),
        });
        rest = after_payload;
    }
    Ok((headers, items))
}

/// The `sentry_key` from an `X-Sentry-Auth` header value.
pub fn key_from_auth_header(value: &str) -> Option<String> {
    let value = value.trim();
    let value = value.strip_prefix("Sentry ").unwrap_or(value);
    value.split(',').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == "sentry_key").then(|| v.trim().to_string())
    })
}

/// The public key of a DSN (`scheme://KEY[:SECRET]@host/project`).
pub fn key_from_dsn(dsn: &str) -> Option<String> {
    let after_scheme = dsn.split_once("://")?.1;
    let userinfo = after_scheme.split_once('@')?.0;
    Some(userinfo.split(':').next().unwrap_or("").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_items_with_and_without_length() {
        let body = b"{\"event_id\":\"abc\"}\n{\"type\":\"event\",\"length\":13}\n{\"message\":1}\n{\"type\":\"attachment\"}\nraw text\n";
        let (headers, items) = parse(body).unwrap();
        assert_eq!(headers["event_id"], "abc");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].item_type(), "event");
        assert_eq!(items[0].payload["message"], 1);
        assert_eq!(items[1].payload, "raw text");
        assert!(parse(b"{}\n{\"type\":\"event\",\"length\":99}\n{}").is_err());
    }

    #[test]
    fn decodes_every_content_encoding() {
        let text = b"{\"hello\":\"world\"}";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text).unwrap();
        assert_eq!(decode_body("gzip", &gz.finish().unwrap()).unwrap(), text);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(text).unwrap();
        assert_eq!(decode_body("deflate", &z.finish().unwrap()).unwrap(), text);
        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 5, 22)
            .write_all(text)
            .unwrap();
        assert_eq!(decode_body("br", &br).unwrap(), text);
        assert!(decode_body("zstd", text).is_err());
    }

    #[test]
    fn finds_keys_in_headers_and_dsns() {
        assert_eq!(
            key_from_auth_header("Sentry sentry_key=pub, sentry_version=7, sentry_client=x/1")
                .as_deref(),
            Some("pub")
        );
        assert_eq!(
            key_from_dsn("http://pub:secret@127.0.0.1:9/1").as_deref(),
            Some("pub")
        );
    }
}
