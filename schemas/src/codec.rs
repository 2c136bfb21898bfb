//! Avro single-object encoding of events: `C3 01`, the writer schema's 8-byte Rabin fingerprint
//! (little-endian), then the Avro binary body. Readers resolve any released writer version into the
//! version their Rust type follows. Bodies are written, and read when the writer's version is the
//! reader's, by `serde_avro_fast` straight from and into the Rust types (the hot path: no
//! intermediate value tree; tests prove its bytes equal apache-avro's generic encoding); older
//! versions are resolved by apache-avro.

use std::io::Cursor;

#[cfg(target_arch = "wasm32")]
use apache_avro::write_avro_datum_ref;
use apache_avro::{from_avro_datum, from_value};

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
    #[error("event does not match schema {name} v{version}: {message}")]
    Fast {
        name: &'static str,
        version: i32,
        message: String,
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
    #[error("{name} does not belong on {set}")]
    NotInSet {
        name: &'static str,
        set: &'static str,
    },
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
    #[cfg(not(target_arch = "wasm32"))]
    {
        let mut config = serde_avro_fast::ser::SerializerConfig::new(&reg.fast);
        let body = serde_avro_fast::to_datum(event, std::mem::take(out), &mut config);
        match body {
            Ok(bytes) => *out = bytes,
            Err(e) => {
                return Err(EncodeError::Fast {
                    name: E::NAME,
                    version: E::VERSION,
                    message: e.to_string(),
                });
            }
        }
    }
    #[cfg(target_arch = "wasm32")]
    write_avro_datum_ref(&reg.schema, event, out).map_err(|e| EncodeError::Avro {
        name: E::NAME,
        version: E::VERSION,
        source: Box::new(e),
    })?;
    Ok(())
}

/// The event name and version these bytes were written as, for subjects that carry several
/// event types (liveness). Reads only the header.
pub fn written_as(bytes: &[u8]) -> Result<(&'static str, i32), DecodeError> {
    writer_of(bytes).map(|r| (r.file.name, r.file.version))
}

/// The envelope of any released event's bytes (every event record starts with it), read
/// without decoding the rest: what a consumer that does not know the event type needs (its
/// node id, event id and time).
pub fn envelope_of(bytes: &[u8]) -> Result<crate::Envelope, DecodeError> {
    let writer = writer_of(bytes)?;
    let body_err = |message: String| DecodeError::Body {
        name: writer.file.name,
        version: writer.file.version,
        message,
    };
    let apache_avro::Schema::Record(record) = &writer.schema else {
        return Err(body_err("not a record".into()));
    };
    let field = record
        .fields
        .first()
        .filter(|f| f.name == "envelope")
        .ok_or_else(|| body_err("the record does not start with its envelope".into()))?;
    let mut cursor = Cursor::new(&bytes[HEADER_LEN..]);
    let value = apache_avro::from_avro_datum(&field.schema, &mut cursor, None)
        .map_err(|e| body_err(e.to_string()))?;
    apache_avro::from_value(&value).map_err(|e| body_err(e.to_string()))
}

/// The released schema the header names.
fn writer_of(bytes: &[u8]) -> Result<&'static crate::registry::Registered, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    if bytes[..2] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&bytes[2..HEADER_LEN]);
    registry()
        .by_fingerprint(&fingerprint)
        .ok_or_else(|| DecodeError::UnknownFingerprint(hex(&fingerprint)))
}

/// Decodes bytes written with any released version of `E`'s schema into `E`.
pub fn decode<E: Event>(bytes: &[u8]) -> Result<E, DecodeError> {
    let writer = writer_of(bytes)?;
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
    #[cfg(not(target_arch = "wasm32"))]
    if writer.fingerprint == reader.fingerprint {
        return decode_same_version(&reader.fast, &bytes[HEADER_LEN..]).map_err(body_err)?;
    }
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

/// Decodes a body written with the reader's own schema straight into `E` (the hot path: no
/// resolution needed, so no intermediate value tree). Outer error: the body is bad; inner:
/// bytes were left over.
#[cfg(not(target_arch = "wasm32"))]
fn decode_same_version<E: Event>(
    schema: &serde_avro_fast::Schema,
    body: &[u8],
) -> Result<Result<E, DecodeError>, String> {
    use std::io::BufRead as _;
    let mut state = serde_avro_fast::de::DeserializerState::from_slice(body, schema);
    let event = E::deserialize(state.deserializer()).map_err(|e| e.to_string())?;
    let trailing = state
        .into_reader()
        .fill_buf()
        .map_err(|e| e.to_string())?
        .len();
    Ok(if trailing == 0 {
        Ok(event)
    } else {
        Err(DecodeError::TrailingBytes(trailing))
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_released_event_starts_with_its_envelope() {
        for r in registry().all() {
            let apache_avro::Schema::Record(record) = &r.schema else {
                panic!("{} is not a record", r.file.name);
            };
            assert_eq!(record.fields[0].name, "envelope", "{}", r.file.name);
        }
        let xid = xid();
        let envelope = envelope_of(&encode(&xid).expect("encode")).expect("envelope");
        assert_eq!(envelope, xid.envelope);
        assert!(envelope_of(b"nope").is_err());
    }
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
                power_limit_w: Some(700.0),
                sm_clock_mhz: Some(1980),
                fan_pct: None,
                ecc_uncorrected: Some(0),
                remapped_rows_pending: Some(false),
                throttle_reasons: 0x4,
                throttle_reason_names: vec!["sw_power_cap".into()],
                nvlink_active: Some(18),
                nvlink_total: Some(18),
                mig_mode: "disabled".into(),
                xid_total: 1,
                health: "warning".into(),
                health_reasons: vec![GpuHealthReason {
                    severity: "warning".into(),
                    code: "xid_13".into(),
                    message: "XID 13".into(),
                }],
                ..GpuSample::default()
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
                sockets: Some(1),
                caches: vec![CpuCache {
                    level: 3,
                    kind: "Unified".into(),
                    size_bytes: 32 << 20,
                    instances: 1,
                }],
                flags: vec!["avx2".into()],
                ..CpuInfo::default()
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
                speed_mbps: Some(25_000),
                state: "up".into(),
                driver: "mlx5_core".into(),
            }],
            gpus: vec![],
            memory: Some(MemoryInfo {
                source: "dmidecode".into(),
                ecc: "Multi-bit ECC".into(),
                slots: Some(16),
                dimms: vec![Dimm {
                    locator: "DIMM_A1".into(),
                    size_bytes: 32 << 30,
                    kind: "DDR5".into(),
                    speed_mts: Some(4800),
                    ecc: Some(true),
                    ..Dimm::default()
                }],
            }),
            block_devices: vec![BlockDevice {
                name: "nvme0n1".into(),
                kind: "nvme".into(),
                size_bytes: 3_840_000_000_000,
                smart_health: "passed".into(),
                smart_temperature_c: Some(38),
                ..BlockDevice::default()
            }],
            system: None,
            location: Some(crate::Location {
                region: "eu-west".into(),
                datacenter: "ams1".into(),
            }),
            collector_errors: vec![CollectorError {
                collector: "gpu".into(),
                message: "NVML unavailable".into(),
            }],
        }
    }

    /// Encodes `event`, checks the header names its type and version and that it decodes back
    /// to the same value; returns the bytes.
    fn round_trips<E: Event + PartialEq + std::fmt::Debug>(event: &E) -> Vec<u8> {
        let bytes = encode(event).expect("encode");
        assert_eq!(bytes[..2], MAGIC);
        assert_eq!(written_as(&bytes).expect("header"), (E::NAME, E::VERSION));
        assert_eq!(&decode::<E>(&bytes).expect("decode"), event);
        bytes
    }

    #[test]
    fn heartbeat_round_trips() {
        round_trips(&heartbeat());
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
        check(&xid());
        check(&NodeWentOffline(liveness::<NodeWentOffline>()));
        check(&NodeBecameSuspect(liveness::<NodeBecameSuspect>()));
        check(&NodeCameBack(liveness::<NodeCameBack>()));
    }

    fn xid() -> GpuXidOccurred {
        GpuXidOccurred {
            gpu_index: 3,
            gpu_uuid: "GPU-3".into(),
            ..GpuXidOccurred::example("node-1", 1_700_000_000_000)
        }
    }

    fn liveness<E: Event>() -> LivenessChange {
        LivenessChange {
            envelope: Envelope::new::<E>("node-1", 1_700_000_000_000),
            last_heartbeat_at_ms: 1_699_999_940_000,
            silent_for_ms: 60_000,
            heartbeat_interval_secs: 10,
            missed_heartbeats: 6,
            previous_state: "suspect".into(),
            detector: "cp-1/4242".into(),
        }
    }

    #[test]
    fn new_event_types_round_trip_and_name_themselves() {
        round_trips(&xid());
        let bytes = round_trips(&NodeWentOffline(liveness::<NodeWentOffline>()));
        round_trips(&NodeCameBack(liveness::<NodeCameBack>()));
        assert!(matches!(
            decode::<NodeCameBack>(&bytes),
            Err(DecodeError::WrongEvent { .. })
        ));
    }

    /// Bytes an old agent wrote (v1) decode into today's types, new fields at their defaults.
    #[test]
    fn v1_events_decode_into_v2_types() {
        fn downgrade<E: Event>(event: &E) -> Vec<u8> {
            let now = registry().get(E::NAME, E::VERSION).expect("current");
            let v1 = registry().get(E::NAME, 1).expect("v1");
            let body = encode(event).expect("encode");
            let mut cursor = Cursor::new(&body[HEADER_LEN..]);
            let as_v1 = from_avro_datum(&now.schema, &mut cursor, Some(&v1.schema)).expect("v1");
            let mut out = MAGIC.to_vec();
            out.extend_from_slice(&v1.fingerprint);
            out.extend(apache_avro::to_avro_datum(&v1.schema, as_v1).expect("datum"));
            out
        }
        let hb = heartbeat();
        let old = decode::<HeartbeatRecorded>(&downgrade(&hb)).expect("decode v1 heartbeat");
        assert_eq!(
            written_as(&downgrade(&hb)).expect("h"),
            ("HeartbeatRecorded", 1)
        );
        assert_eq!(old.gpus[0].power_w, hb.gpus[0].power_w);
        assert_eq!(old.gpus[0].health, "");
        assert_eq!(old.gpus[0].nvlink_active, None);
        assert!(old.gpus[0].health_reasons.is_empty());

        let inv = inventory();
        let old = decode::<InventoryReported>(&downgrade(&inv)).expect("decode v1 inventory");
        assert_eq!(old.cpu.model, inv.cpu.model);
        assert_eq!(old.cpu.sockets, None);
        assert!(old.cpu.caches.is_empty());
        assert_eq!(old.memory, None);
        assert!(old.block_devices.is_empty());
        assert_eq!(old.interfaces[0].speed_mbps, None);
        assert_eq!(old.interfaces[0].mac, inv.interfaces[0].mac);
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
