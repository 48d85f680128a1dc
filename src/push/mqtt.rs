//! A small synchronous MQTT 3.1.1 client: just what the fleet push needs.
//!
//! CONNECT (clean session, keep-alive, optional user name and password) → CONNACK, PUBLISH at
//! QoS 1 → the matching PUBACK, PINGREQ → PINGRESP, DISCONNECT. Every packet read from the
//! broker is bounds-checked (remaining length at most 4 bytes and [`MAX_INCOMING`] bytes, every
//! field length checked against the packet), so a broken or hostile broker gives an error,
//! never a panic or a huge allocation. Each read and write has a timeout.

use std::fmt;
use std::io::{self, Read, Write};
use std::time::Duration;

/// Largest packet accepted from the broker. We only ever expect CONNACK, PUBACK and PINGRESP
/// (2 bytes each); anything bigger than this is refused without being read into memory.
pub const MAX_INCOMING: usize = 64 * 1024;

/// Largest packet the protocol can encode (remaining length in 4 bytes).
const MAX_REMAINING: usize = 268_435_455;

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;

/// What went wrong talking to the broker, as one readable line.
#[derive(Debug)]
pub enum MqttError {
    /// The transport failed (`what` says during which step).
    Io {
        what: &'static str,
        source: io::Error,
    },
    /// The broker did not answer within the timeout.
    Timeout { what: &'static str, after: Duration },
    /// The broker refused the connection with a CONNACK return code.
    Refused { code: u8 },
    /// The broker sent something that is not valid MQTT 3.1.1 here.
    Protocol(String),
    /// Something we were asked to send cannot be encoded.
    Invalid(String),
}

impl fmt::Display for MqttError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MqttError::Io { what, source } => write!(f, "{what} failed ({source})"),
            MqttError::Timeout { what, after } => {
                write!(
                    f,
                    "no answer from the broker {what} within {} s",
                    after.as_secs_f32()
                )
            }
            MqttError::Refused { code } => write!(f, "{}", refusal(*code)),
            MqttError::Protocol(problem) => {
                write!(f, "the broker broke the MQTT 3.1.1 protocol: {problem}")
            }
            MqttError::Invalid(problem) => write!(f, "{problem}"),
        }
    }
}

impl std::error::Error for MqttError {}

/// What each CONNACK return code of MQTT 3.1.1 (section 3.2.2.3) means for the operator.
fn refusal(code: u8) -> String {
    let what = match code {
        1 => "unacceptable protocol version: the broker does not speak MQTT 3.1.1",
        2 => "identifier rejected: the broker does not accept the client id agecam-<unit_id>",
        3 => "server unavailable: the broker is up but not accepting connections",
        4 => {
            "bad user name or password: check push.username and the password in push.password_file"
        }
        5 => {
            "not authorized: check push.username and the password in push.password_file, and the broker's access rules"
        }
        _ => "an unknown return code (not MQTT 3.1.1)",
    };
    format!("the broker refused the connection (CONNACK code {code}, {what})")
}

impl MqttError {
    /// True when the broker answered but refused the connection (CONNACK code ≠ 0).
    pub fn is_refusal(&self) -> bool {
        matches!(self, MqttError::Refused { .. })
    }

    fn io(what: &'static str, timeout: Duration) -> impl Fn(io::Error) -> MqttError {
        move |source| match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => MqttError::Timeout {
                what,
                after: timeout,
            },
            _ => MqttError::Io { what, source },
        }
    }
}

/// Connection options.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub client_id: String,
    /// Seconds; the broker drops us after 1.5× this without traffic. 0 turns it off.
    pub keep_alive_s: u16,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    /// How long each answer may take.
    pub timeout: Duration,
}

/// One packet from the broker that this client understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    ConnAck { session_present: bool, code: u8 },
    PubAck { packet_id: u16 },
    PingResp,
}

/// An open MQTT session over any byte stream (plain TCP or TLS). The stream's own read and
/// write timeouts bound every wait; `timeout` is only used to word the error.
pub struct Client<S: Read + Write> {
    stream: S,
    next_id: u16,
    timeout: Duration,
}

impl<S: Read + Write> Client<S> {
    /// Sends CONNECT with a clean session and waits for CONNACK. A refusal comes back as
    /// [`MqttError::Refused`], whose message says what to check.
    pub fn connect(mut stream: S, options: &ConnectOptions) -> Result<Client<S>, MqttError> {
        let packet = encode_connect(options)?;
        write_packet(&mut stream, &packet, options.timeout, "sending CONNECT")?;
        let mut client = Client {
            stream,
            next_id: 1,
            timeout: options.timeout,
        };
        match client.read("waiting for CONNACK")? {
            Incoming::ConnAck { code: 0, .. } => Ok(client),
            Incoming::ConnAck { code, .. } => Err(MqttError::Refused { code }),
            other => Err(MqttError::Protocol(format!(
                "expected CONNACK first, got {other:?}"
            ))),
        }
    }

    /// Publishes `payload` at QoS 1 and waits for the broker's PUBACK of it: when this returns
    /// Ok, the broker has taken responsibility for the message.
    pub fn publish_qos1(&mut self, topic: &str, payload: &[u8]) -> Result<(), MqttError> {
        let packet_id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        let packet = encode_publish_qos1(topic, packet_id, payload)?;
        write_packet(&mut self.stream, &packet, self.timeout, "sending PUBLISH")?;
        loop {
            match self.read("waiting for PUBACK")? {
                Incoming::PubAck { packet_id: id } if id == packet_id => return Ok(()),
                // A late answer to something earlier, or a ping answer: not ours, keep waiting.
                Incoming::PubAck { .. } | Incoming::PingResp => continue,
                other => {
                    return Err(MqttError::Protocol(format!(
                        "expected PUBACK {packet_id}, got {other:?}"
                    )))
                }
            }
        }
    }

    /// Sends PINGREQ and waits for PINGRESP (keeps an idle connection open).
    pub fn ping(&mut self) -> Result<(), MqttError> {
        write_packet(
            &mut self.stream,
            &[PINGREQ << 4, 0],
            self.timeout,
            "sending PINGREQ",
        )?;
        loop {
            match self.read("waiting for PINGRESP")? {
                Incoming::PingResp => return Ok(()),
                Incoming::PubAck { .. } => continue,
                other => {
                    return Err(MqttError::Protocol(format!(
                        "expected PINGRESP, got {other:?}"
                    )))
                }
            }
        }
    }

    /// Sends DISCONNECT (the broker then closes the connection without a will).
    pub fn disconnect(mut self) -> Result<(), MqttError> {
        write_packet(
            &mut self.stream,
            &[DISCONNECT << 4, 0],
            self.timeout,
            "sending DISCONNECT",
        )
    }

    fn read(&mut self, what: &'static str) -> Result<Incoming, MqttError> {
        read_packet(&mut self.stream, self.timeout, what)
    }
}

fn write_packet(
    stream: &mut impl Write,
    packet: &[u8],
    timeout: Duration,
    what: &'static str,
) -> Result<(), MqttError> {
    stream
        .write_all(packet)
        .and_then(|()| stream.flush())
        .map_err(MqttError::io(what, timeout))
}

/// Appends the variable-length "remaining length" of MQTT (7 bits per byte, at most 4 bytes).
fn push_remaining_length(out: &mut Vec<u8>, mut n: usize) -> Result<(), MqttError> {
    if n > MAX_REMAINING {
        return Err(MqttError::Invalid(format!(
            "an MQTT packet of {n} bytes is larger than the protocol allows ({MAX_REMAINING})"
        )));
    }
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return Ok(());
        }
    }
}

/// Appends a length-prefixed field (UTF-8 string or binary data, at most 65535 bytes).
fn push_field(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> Result<(), MqttError> {
    let len = u16::try_from(bytes.len()).map_err(|_| {
        MqttError::Invalid(format!(
            "the MQTT {what} is {} bytes; at most 65535 are allowed",
            bytes.len()
        ))
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn packet(kind_and_flags: u8, body: &[u8]) -> Result<Vec<u8>, MqttError> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(kind_and_flags);
    push_remaining_length(&mut out, body.len())?;
    out.extend_from_slice(body);
    Ok(out)
}

fn encode_connect(options: &ConnectOptions) -> Result<Vec<u8>, MqttError> {
    if options.password.is_some() && options.username.is_none() {
        // MQTT 3.1.1 section 3.1.2.9: a password needs a user name.
        return Err(MqttError::Invalid(
            "an MQTT password needs a user name (push.username)".into(),
        ));
    }
    let mut body = Vec::new();
    push_field(&mut body, b"MQTT", "protocol name")?;
    body.push(4); // protocol level 4 = 3.1.1
    let mut flags = 0x02; // clean session
    if options.username.is_some() {
        flags |= 0x80;
    }
    if options.password.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&options.keep_alive_s.to_be_bytes());
    push_field(&mut body, options.client_id.as_bytes(), "client id")?;
    if let Some(user) = &options.username {
        push_field(&mut body, user.as_bytes(), "user name")?;
    }
    if let Some(password) = &options.password {
        push_field(&mut body, password, "password")?;
    }
    packet(CONNECT << 4, &body)
}

/// Checks a topic name we publish to: non-empty UTF-8 without wildcards or NUL.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("a topic cannot be empty".into());
    }
    if topic.len() > 65535 {
        return Err("a topic is at most 65535 bytes".into());
    }
    if let Some(c) = topic.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
        return Err(format!(
            "a topic to publish to cannot hold {c:?} (wildcards and NUL are for subscriptions)"
        ));
    }
    Ok(())
}

fn encode_publish_qos1(topic: &str, packet_id: u16, payload: &[u8]) -> Result<Vec<u8>, MqttError> {
    check_topic(topic).map_err(MqttError::Invalid)?;
    if packet_id == 0 {
        return Err(MqttError::Invalid("MQTT packet id 0 is not allowed".into()));
    }
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    push_field(&mut body, topic.as_bytes(), "topic")?;
    body.extend_from_slice(&packet_id.to_be_bytes());
    body.extend_from_slice(payload);
    // QoS 1 (bits 2-1 = 01), not a duplicate, not retained.
    packet(PUBLISH << 4 | 0x02, &body)
}

/// Reads one packet, checking every length before trusting it.
pub fn read_packet(
    stream: &mut impl Read,
    timeout: Duration,
    what: &'static str,
) -> Result<Incoming, MqttError> {
    let io = MqttError::io(what, timeout);
    let mut first = [0u8; 1];
    read_exact_or_closed(stream, &mut first, what).map_err(&io)?;
    let mut remaining: usize = 0;
    let mut shift = 0;
    loop {
        let mut byte = [0u8; 1];
        read_exact_or_closed(stream, &mut byte, what).map_err(&io)?;
        remaining |= ((byte[0] & 0x7f) as usize) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(MqttError::Protocol(
                "a remaining length longer than 4 bytes".into(),
            ));
        }
    }
    if remaining > MAX_INCOMING {
        return Err(MqttError::Protocol(format!(
            "a packet of {remaining} bytes (we expect at most {MAX_INCOMING})"
        )));
    }
    let mut body = vec![0u8; remaining];
    read_exact_or_closed(stream, &mut body, what).map_err(&io)?;
    parse(first[0], &body)
}

/// A closed connection in the middle of a read reads better than "failed to fill buffer".
fn read_exact_or_closed(stream: &mut impl Read, buf: &mut [u8], what: &str) -> io::Result<()> {
    stream.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the broker closed the connection while we were {what}"),
            )
        } else {
            e
        }
    })
}

/// Decodes one packet from its first byte and its body.
pub fn parse(first: u8, body: &[u8]) -> Result<Incoming, MqttError> {
    let kind = first >> 4;
    let flags = first & 0x0f;
    let bad = |problem: String| Err(MqttError::Protocol(problem));
    match kind {
        CONNACK => {
            if flags != 0 || body.len() != 2 {
                return bad(format!(
                    "a CONNACK with flags {flags:#x} and {} bytes (expected 0 and 2)",
                    body.len()
                ));
            }
            if body[0] & 0xfe != 0 {
                return bad(format!("CONNACK acknowledge flags {:#x}", body[0]));
            }
            Ok(Incoming::ConnAck {
                session_present: body[0] & 1 == 1,
                code: body[1],
            })
        }
        PUBACK => {
            if flags != 0 || body.len() != 2 {
                return bad(format!(
                    "a PUBACK with flags {flags:#x} and {} bytes (expected 0 and 2)",
                    body.len()
                ));
            }
            Ok(Incoming::PubAck {
                packet_id: u16::from_be_bytes([body[0], body[1]]),
            })
        }
        PINGRESP => {
            if flags != 0 || !body.is_empty() {
                return bad("a PINGRESP with a body or flags".into());
            }
            Ok(Incoming::PingResp)
        }
        other => bad(format!(
            "packet type {other} (a client that only publishes expects CONNACK, PUBACK or PINGRESP)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A stream that answers with fixed bytes and records what is written.
    struct Scripted {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Scripted {
        fn new(input: &[u8]) -> Scripted {
            Scripted {
                input: Cursor::new(input.to_vec()),
                output: Vec::new(),
            }
        }
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn options() -> ConnectOptions {
        ConnectOptions {
            client_id: "agecam-hall".into(),
            keep_alive_s: 60,
            username: Some("kiosk".into()),
            password: Some(b"s3cret".to_vec()),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn connect_packet_matches_the_3_1_1_layout() {
        let p = encode_connect(&options()).unwrap();
        let mut expected = vec![0x10, 0];
        let body: Vec<u8> = [
            &[0, 4][..],
            b"MQTT",
            &[4, 0xc2, 0, 60],
            &[0, 11],
            b"agecam-hall",
            &[0, 5],
            b"kiosk",
            &[0, 6],
            b"s3cret",
        ]
        .concat();
        expected[1] = body.len() as u8;
        expected.extend(body);
        assert_eq!(p, expected);
        let anonymous = ConnectOptions {
            username: None,
            password: None,
            ..options()
        };
        assert_eq!(
            encode_connect(&anonymous).unwrap()[9],
            0x02,
            "clean session only"
        );
        let password_only = ConnectOptions {
            username: None,
            ..options()
        };
        assert!(encode_connect(&password_only).is_err());
    }

    #[test]
    fn remaining_length_uses_one_to_four_bytes() {
        for (n, bytes) in [
            (0usize, vec![0u8]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xff, 0x7f]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
            (MAX_REMAINING, vec![0xff, 0xff, 0xff, 0x7f]),
        ] {
            let mut out = Vec::new();
            push_remaining_length(&mut out, n).unwrap();
            assert_eq!(out, bytes, "{n}");
        }
        assert!(push_remaining_length(&mut Vec::new(), MAX_REMAINING + 1).is_err());
    }

    #[test]
    fn publish_waits_for_its_own_puback() {
        // CONNACK ok, then a stray PUBACK 9, a PINGRESP, then PUBACK 1.
        let mut s = Scripted::new(&[0x20, 2, 0, 0, 0x40, 2, 0, 9, 0xd0, 0, 0x40, 2, 0, 1]);
        let mut client = Client::connect(&mut s, &options()).unwrap();
        client.publish_qos1("agecam/hall/intervals", b"{}").unwrap();
        client.disconnect().unwrap();
        let written = &s.output;
        let publish_at = encode_connect(&options()).unwrap().len();
        let expected: Vec<u8> = [
            &[0x32, 2 + 21 + 2 + 2, 0, 21][..],
            b"agecam/hall/intervals",
            &[0, 1],
            b"{}",
            &[0xe0, 0],
        ]
        .concat();
        assert_eq!(&written[publish_at..], &expected[..]);
    }

    #[test]
    fn every_connack_refusal_reads_clearly() {
        for code in 1..=6u8 {
            let mut s = Scripted::new(&[0x20, 2, 0, code]);
            let err = Client::connect(&mut s, &options()).err().unwrap();
            assert!(err.is_refusal());
            let text = err.to_string();
            assert!(text.contains(&format!("code {code}")), "{text}");
            assert!(!text.contains('\n'));
            if code == 4 || code == 5 {
                assert!(text.contains("push.password_file"), "{text}");
            }
        }
    }

    #[test]
    fn hostile_or_broken_brokers_give_errors_not_panics() {
        let cases: &[(&[u8], &str)] = &[
            (&[], "closed the connection"),
            (&[0x20], "closed the connection"),
            (&[0x20, 2, 0], "closed the connection"),
            (&[0x20, 0xff, 0xff, 0xff, 0xff, 0x01], "longer than 4 bytes"),
            (&[0x20, 0xff, 0xff, 0xff, 0x7f], "268435455 bytes"),
            (&[0x20, 3, 0, 0, 0], "CONNACK with flags 0x0 and 3 bytes"),
            (&[0x21, 2, 0, 0], "CONNACK with flags 0x1"),
            (&[0x20, 2, 0x80, 0], "acknowledge flags"),
            (&[0x30, 2, 0, 0], "packet type 3"),
            (&[0x40, 2, 0, 1], "expected CONNACK first"),
        ];
        for (input, expected) in cases {
            let mut s = Scripted::new(input);
            let err = Client::connect(&mut s, &options())
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(expected), "{input:?}: {err}");
        }
        // Random garbage never panics and never allocates more than MAX_INCOMING.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            let len = (state % 12) as usize;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push(state as u8);
            }
            let mut s = Scripted::new(&bytes);
            let _ = read_packet(&mut s, Duration::from_secs(1), "fuzzing");
        }
    }

    #[test]
    fn topics_with_wildcards_are_refused() {
        assert!(check_topic("agecam/hall/intervals").is_ok());
        assert!(check_topic("agecam/+/intervals").is_err());
        assert!(check_topic("agecam/#").is_err());
        assert!(check_topic("").is_err());
    }
}
