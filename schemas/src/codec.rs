//! Avro single-object encoding of events: `C3 01`, the writer schema's 8-byte Rabin fingerprint
//! (little-endian), then the Avro binary body. Readers resolve any released writer version into the
//! version their Rust type follows.

use std::io::Cursor;

use apache_avro::{from_avro_datum, from_value, write_avro_datum_ref};

use crate::events::Event;
use crate::registry::registry;

/// The two marker bytes of Avro single-object encoding.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];
/// Length of the header: marker plus fingerprint.
pub const HEADER_LEN: usize = 10;

/// Why an event could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("no released schema for {name} v{version}")]
    UnknownSchema { name: &'static str, version: i32 },
    #[error("event does not match schema {name} v{version}: {source}")]
    Avro {
        name: &'static str,
        version: i32,
        #[source]
        source: Box<apache_avro::Error>,
    },
}

/// Why bytes could not be decoded into an event. Every variant is bad input, never a crash.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message too short for an Avro single-object header ({0} bytes)")]
    TooShort(usize),
    #[error("not Avro single-object encoding (bad marker bytes)")]
    BadMagic,
    #[error("unknown schema fingerprint {0}")]
    UnknownFingerprint(String),
    #[error("written as {found}, expected {expected}")]
    WrongEvent {
        found: &'static str,
        expected: &'static str,
    },
    #[error("no released schema for reader {name} v{version}")]
    UnknownReader { name: &'static str, version: i32 },
    #[error("body does not decode as {name} v{version}: {message}")]
    Body {
        name: &'static str,
        version: i32,
        message: String,
    },
    #[error("{0} trailing bytes after the event body")]
    TrailingBytes(usize),
}

/// Encodes `event` with the schema version its type follows.
pub fn encode<E: Event>(event: &E) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256);
    encode_into(event, &mut out)?;
    Ok(out)
}

/// Encodes `event`, appending to `out` (reuse the buffer in hot loops).
pub fn encode_into<E: Event>(event: &E, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let reg = registry()
        .get(E::NAME, E::VERSION)
        .ok_or(EncodeError::UnknownSchema {
            name: E::NAME,
            version: E::VERSION,
        })?;
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&reg.fingerprint);
    write_avro_datum_ref(&reg.schema, event, out).map_err(|e| EncodeError::Avro {
        name: E::NAME,
        version: E::VERSION,
        source: Box::new(e),
    })?;
    Ok(())
}

/// Decodes bytes written with any released version of `E`'s schema into `E`.
pub fn decode<E: Event>(bytes: &[u8]) -> Result<E, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    if bytes[..2] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&bytes[2..HEADER_LEN]);
    let writer = registry()
        .by_fingerprint(&fingerprint)
        .ok_or_else(|| DecodeError::UnknownFingerprint(hex(&fingerprint)))?;
    if writer.file.name != E::NAME {
        return Err(DecodeError::WrongEvent {
            found: writer.file.name,
            expected: E::NAME,
        });
    }
    let reader = registry()
        .get(E::NAME, E::VERSION)
        .ok_or(DecodeError::UnknownReader {
            name: E::NAME,
            version: E::VERSION,
        })?;
    let body_err = |message: String| DecodeError::Body {
        name: E::NAME,
        version: writer.file.version,
        message,
    };
    let mut cursor = Cursor::new(&bytes[HEADER_LEN..]);
    let reader_schema = (writer.fingerprint != reader.fingerprint).then_some(&reader.schema);
    let value = from_avro_datum(&writer.schema, &mut cursor, reader_schema)
        .map_err(|e| body_err(e.to_string()))?;
    let trailing = bytes.len() - HEADER_LEN - cursor.position() as usize;
    if trailing != 0 {
        return Err(DecodeError::TrailingBytes(trailing));
    }
    from_value::<E>(&value).map_err(|e| body_err(e.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;

    pub(crate) fn heartbeat() -> HeartbeatRecorded {
        HeartbeatRecorded {
            envelope: Envelope::new::<HeartbeatRecorded>("node-1", 1_700_000_000_123),
            seq: 7,
            interval_secs: 10,
            uptime_secs: 3600,
            cpu_pct: 12.5,
            cpu_count: 8,
            load1: 0.5,
            load5: 0.25,
            load15: 0.125,
            mem_total_bytes: 16 << 30,
            mem_used_bytes: 4 << 30,
            swap_total_bytes: 0,
            swap_used_bytes: 0,
            disk_total_bytes: 500 << 30,
            disk_used_bytes: 100 << 30,
            net_rx_bytes_per_sec: 1234.5,
            net_tx_bytes_per_sec: 99.0,
            gpus: vec![GpuSample {
                index: 0,
                uuid: "GPU-1".into(),
                util_pct: 87.0,
                mem_util_pct: 40.0,
                mem_used_bytes: 30 << 30,
                mem_total_bytes: 80 << 30,
                temperature_c: 71.0,
                power_w: 410.5,
            }],
        }
    }

    pub(crate) fn inventory() -> InventoryReported {
        InventoryReported {
            envelope: Envelope::new::<InventoryReported>("node-1", 1_700_000_000_000),
            hostname: "gpu-a01".into(),
            os_name: "Debian GNU/Linux".into(),
            os_version: "12".into(),
            kernel_version: "6.1.0".into(),
            arch: "x86_64".into(),
            boot_time_ms: 1_699_000_000_000,
            agent_version: "0.1.0".into(),
            cpu: CpuInfo {
                model: "AMD EPYC".into(),
                vendor: "AuthenticAMD".into(),
                physical_cores: None,
                logical_cores: 2,
                frequency_mhz: 2450,
            },
            memory_total_bytes: 24 << 30,
            swap_total_bytes: 0,
            disks: vec![Disk {
                name: "/dev/vda".into(),
                mount_point: "/".into(),
                file_system: "ext4".into(),
                kind: "ssd".into(),
                total_bytes: 252 << 30,
                removable: false,
            }],
            interfaces: vec![NetInterface {
                name: "eth0".into(),
                mac: "52:54:00:12:34:56".into(),
                addresses: vec!["10.0.2.15/24".into(), "fe80::1/64".into()],
                mtu: 1500,
            }],
            gpus: vec![],
            collector_errors: vec![CollectorError {
                collector: "gpu".into(),
                message: "NVML unavailable".into(),
            }],
        }
    }

    #[test]
    fn heartbeat_round_trips() {
        let hb = heartbeat();
        let bytes = encode(&hb).expect("encode");
        assert_eq!(bytes[..2], MAGIC);
        assert_eq!(decode::<HeartbeatRecorded>(&bytes).expect("decode"), hb);
    }

    #[test]
    fn inventory_round_trips_with_optional_fields() {
        let mut inv = inventory();
        assert_eq!(
            decode::<InventoryReported>(&encode(&inv).expect("e")).expect("d"),
            inv
        );
        inv.cpu.physical_cores = Some(1);
        assert_eq!(
            decode::<InventoryReported>(&encode(&inv).expect("e")).expect("d"),
            inv
        );
    }

    /// The Rust types follow the `.avsc` files: encoding through the generic value path (which
    /// validates every field name and type against the schema) agrees byte for byte with the
    /// codec, and decoding the generic value yields the same Rust value.
    #[test]
    fn rust_types_match_their_schema_files() {
        fn check<E: Event + PartialEq + std::fmt::Debug>(event: &E) {
            let reg = registry().get(E::NAME, E::VERSION).expect("registered");
            let value = apache_avro::to_value(event).expect("to_value");
            assert!(value.validate(&reg.schema), "{} does not validate", E::NAME);
            let body = apache_avro::to_avro_datum(&reg.schema, value).expect("datum");
            let ours = encode(event).expect("encode");
            assert_eq!(&ours[HEADER_LEN..], &body[..], "{}", E::NAME);
        }
        check(&heartbeat());
        check(&inventory());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let good = encode(&heartbeat()).expect("encode");
        assert!(matches!(
            decode::<HeartbeatRecorded>(b""),
            Err(DecodeError::TooShort(0))
        ));
        assert!(matches!(
            decode::<HeartbeatRecorded>(b"{\"json\":true}"),
            Err(DecodeError::BadMagic)
        ));
        let mut unknown = good.clone();
        unknown[2] ^= 0xff;
        assert!(matches!(
            decode::<HeartbeatRecorded>(&unknown),
            Err(DecodeError::UnknownFingerprint(_))
        ));
        assert!(matches!(
            decode::<InventoryReported>(&good),
            Err(DecodeError::WrongEvent { .. })
        ));
        for cut in [HEADER_LEN, HEADER_LEN + 3, good.len() - 1] {
            assert!(
                matches!(
                    decode::<HeartbeatRecorded>(&good[..cut]),
                    Err(DecodeError::Body { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            decode::<HeartbeatRecorded>(&long),
            Err(DecodeError::TrailingBytes(1))
        ));
        // Random garbage after a valid header never panics.
        let mut state = 0x2545F4914F6CDD1Du64;
        for _ in 0..2000 {
            let mut junk = good[..HEADER_LEN].to_vec();
            for _ in 0..(state % 200) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                junk.push(state as u8);
            }
            let _ = decode::<HeartbeatRecorded>(&junk);
        }
    }
}
