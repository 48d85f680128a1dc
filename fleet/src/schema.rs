//! The interval message schema: strict parsing and validation of one MQTT payload.
//!
//! A payload is exactly one line of `agecam stats export --format json` (see docs/fleet.md,
//! "Fleet push"). Everything else is rejected with a one-line reason: a payload over
//! [`MAX_PAYLOAD`], not UTF-8, not one JSON object, unknown or missing fields, wrong types,
//! negative or fractional counts, non-finite numbers, `end <= start`, an id that is not
//! `unit@start`, times that disagree with `start`/`end`, a unit that is not the one in the
//! topic, duplicate or malformed cells. Nothing here can panic on any input.
//!
//! Two versions are accepted. Schema 1 (no `schema` key; older units) has cells of exactly
//! `age_bucket`, `gender`, `visits`. Schema 2 (`"schema":2`) adds to every cell `watchers`
//! (visitors who looked at the screen for at least a second) and `attention_s` (the seconds
//! they looked), both null together when the unit's k-anonymity withheld the split. Any other
//! `schema` is rejected with kind `schema`: the collector must be upgraded before the units.

use serde::Deserialize;

/// Largest payload accepted. A real interval (9 age buckets × 4 genders) is under 2 KiB.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Most cells one interval may carry.
pub const MAX_CELLS: usize = 256;
/// Longest interval accepted (a unit's `stats.interval_minutes` is far below a day).
pub const MAX_INTERVAL_S: i64 = 86_400;
/// The newest schema version this collector reads (it reads every one from 1 up to it).
pub const SCHEMA: u8 = 2;
/// Genders a unit publishes (`any` is a k-anonymity merge of a bucket's genders).
pub const GENDERS: [&str; 4] = ["female", "male", "unknown", "any"];

/// One published cell: visits of one age bucket × gender in one interval, and (schema 2)
/// how many of those visitors looked at the screen and for how long in total.
///
/// `watchers` and `attention_s` are both `None` for a schema 1 cell (attention unknown) and
/// for a schema 2 cell whose split the unit withheld; otherwise both `Some`. They are left
/// out of the canonical form when `None`, so a schema 1 message keeps the canonical form (and
/// digest) it had before schema 2.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cell {
    pub age_bucket: String,
    pub gender: String,
    pub visits: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watchers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention_s: Option<f64>,
}

/// One validated interval, as the unit published it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Interval {
    pub id: String,
    pub unit_id: String,
    pub start: i64,
    pub end: i64,
    pub uptime_s: f64,
    pub frames: u64,
    pub camera_faults: u64,
    /// Sorted by (age bucket, gender), no duplicates.
    pub cells: Vec<Cell>,
    pub suppressed_cells: u32,
    pub dwell_mean_s: Option<f64>,
    /// The schema version it came in (1 or 2); left out of the canonical form when 1.
    #[serde(skip_serializing_if = "is_schema_1")]
    pub schema: u8,
}

fn is_schema_1(v: &u8) -> bool {
    *v == 1
}

/// The wire form, field for field; `deny_unknown_fields` makes any extra key an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    /// Absent in schema 1; checked by [`Peek`] before this is parsed.
    #[serde(default)]
    schema: Option<u8>,
    id: String,
    unit_id: String,
    start: i64,
    end: i64,
    uptime_s: f64,
    frames: u64,
    camera_faults: u64,
    cells: Vec<WireCell>,
    suppressed_cells: u32,
    // Required, may be null: `Option` alone would also accept a missing key.
    #[serde(deserialize_with = "required_nullable")]
    dwell_mean_s: Option<f64>,
    start_time: String,
    end_time: String,
}

/// A cell on the wire. `watchers` and `attention_s` are `None` when the key is absent and
/// `Some(None)` when it is null; which is allowed depends on the schema version.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCell {
    age_bucket: String,
    gender: String,
    visits: u32,
    #[serde(default, deserialize_with = "present")]
    watchers: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    attention_s: Option<Option<f64>>,
}

/// The `schema` key alone, read first so that a message of a newer schema is rejected for
/// its version (the collector needs an upgrade), not for the fields that version added.
#[derive(Deserialize)]
struct Peek {
    #[serde(default, deserialize_with = "present")]
    schema: Option<serde_json::Value>,
}

fn required_nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<f64>::deserialize(d)
}

/// A key that is present (its value may be null): `Some(value)`; with `#[serde(default)]` an
/// absent key is `None`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Why a payload was rejected; `kind` is stable (for rate-limited logging), `detail` says more.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct Rejection {
    pub kind: &'static str,
    pub detail: String,
}

fn reject(kind: &'static str, detail: impl Into<String>) -> Rejection {
    Rejection {
        kind,
        detail: detail.into(),
    }
}

/// A unit id as the daemon allows it (`stats.unit_id`): 1 to 64 letters, digits, `-`, `_`, `.`.
pub fn valid_unit_id(unit: &str) -> bool {
    !unit.is_empty()
        && unit.len() <= 64
        && unit
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// The unit named by a topic `<prefix>/<unit_id>/intervals`, if the topic has that shape.
pub fn unit_of_topic(topic: &str) -> Option<&str> {
    let rest = topic.strip_suffix("/intervals")?;
    let unit = rest.rsplit('/').next()?;
    valid_unit_id(unit).then_some(unit)
}

/// Parses and checks one message that arrived on `topic`.
pub fn parse(topic: &str, payload: &[u8]) -> Result<Interval, Rejection> {
    if payload.len() > MAX_PAYLOAD {
        return Err(reject(
            "too large",
            format!("{} bytes, at most {MAX_PAYLOAD}", payload.len()),
        ));
    }
    let topic_unit = unit_of_topic(topic).ok_or_else(|| {
        reject(
            "bad topic",
            format!("{topic:?} is not <prefix>/<unit_id>/intervals"),
        )
    })?;
    let text = std::str::from_utf8(payload).map_err(|e| {
        reject(
            "not UTF-8",
            format!("invalid byte at offset {}", e.valid_up_to()),
        )
    })?;
    // Unreadable JSON falls through to the full parse below, which says what is wrong.
    if let Ok(Peek {
        schema: Some(version),
    }) = serde_json::from_str::<Peek>(text)
    {
        if !matches!(version.as_u64(), Some(v) if (1..=SCHEMA as u64).contains(&v)) {
            let shown: String = version.to_string().chars().take(40).collect();
            return Err(reject(
                "schema",
                format!(
                    "schema {shown}: this collector reads schema 1 to {SCHEMA} only; \
                     upgrade agecam-fleet (upgrade the collector before the units)"
                ),
            ));
        }
    }
    let wire: Wire = serde_json::from_str(text).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Data => "not the interval schema",
            _ => "not JSON",
        };
        reject(kind, e.to_string())
    })?;
    check(wire, topic_unit)
}

fn check(w: Wire, topic_unit: &str) -> Result<Interval, Rejection> {
    if !valid_unit_id(&w.unit_id) {
        return Err(reject(
            "bad unit_id",
            format!(
                "{:.80?}: 1 to 64 letters, digits, '-', '_' or '.'",
                w.unit_id
            ),
        ));
    }
    if w.unit_id != topic_unit {
        return Err(reject(
            "unit_id does not match topic",
            format!("payload says {:?}, topic says {topic_unit:?}", w.unit_id),
        ));
    }
    if w.start < 0 || w.end <= w.start || w.end - w.start > MAX_INTERVAL_S {
        return Err(reject(
            "bad interval times",
            format!(
                "start {} end {}: need 0 <= start < end <= start + {MAX_INTERVAL_S}",
                w.start, w.end
            ),
        ));
    }
    let expected_id = format!("{}@{}", w.unit_id, w.start);
    if w.id != expected_id {
        return Err(reject(
            "bad id",
            format!("{:.100?}, expected {expected_id:?} (unit@start)", w.id),
        ));
    }
    if w.start_time != rfc3339(w.start) || w.end_time != rfc3339(w.end) {
        return Err(reject(
            "bad start_time/end_time",
            format!(
                "{:.40?}/{:.40?} do not match start {} / end {}",
                w.start_time, w.end_time, w.start, w.end
            ),
        ));
    }
    let length = (w.end - w.start) as f64;
    if !w.uptime_s.is_finite() || w.uptime_s < 0.0 || w.uptime_s > length + 60.0 {
        return Err(reject(
            "bad uptime_s",
            format!(
                "{}: need 0 to the interval length {length} (+60 s)",
                w.uptime_s
            ),
        ));
    }
    // Stored as signed 64-bit in PostgreSQL.
    if w.frames > i64::MAX as u64 || w.camera_faults > i64::MAX as u64 {
        return Err(reject("bad counts", "frames or camera_faults too large"));
    }
    if let Some(d) = w.dwell_mean_s {
        if !d.is_finite() || d < 0.0 || d > MAX_INTERVAL_S as f64 {
            return Err(reject("bad dwell_mean_s", format!("{d}")));
        }
    }
    if w.cells.len() > MAX_CELLS {
        return Err(reject(
            "too many cells",
            format!("{}, at most {MAX_CELLS}", w.cells.len()),
        ));
    }
    let version = w.schema.unwrap_or(1);
    let mut cells = Vec::with_capacity(w.cells.len());
    for c in w.cells {
        if !valid_bucket(&c.age_bucket) {
            return Err(reject(
                "bad age_bucket",
                format!(
                    "{:.40?}: like \"25-34\", \"65+\" or \"unknown\"",
                    c.age_bucket
                ),
            ));
        }
        if !GENDERS.contains(&c.gender.as_str()) {
            return Err(reject(
                "bad gender",
                format!("{:.40?}: one of {GENDERS:?}", c.gender),
            ));
        }
        let (watchers, attention_s) = attention(version, &c, length)?;
        cells.push(Cell {
            age_bucket: c.age_bucket,
            gender: c.gender,
            visits: c.visits,
            watchers,
            attention_s,
        });
    }
    cells.sort_by(|a, b| (&a.age_bucket, &a.gender).cmp(&(&b.age_bucket, &b.gender)));
    if cells
        .windows(2)
        .any(|p| p[0].age_bucket == p[1].age_bucket && p[0].gender == p[1].gender)
    {
        return Err(reject("duplicate cell", "one age bucket × gender twice"));
    }
    Ok(Interval {
        id: w.id,
        unit_id: w.unit_id,
        start: w.start,
        end: w.end,
        uptime_s: w.uptime_s,
        frames: w.frames,
        camera_faults: w.camera_faults,
        cells,
        suppressed_cells: w.suppressed_cells,
        dwell_mean_s: w.dwell_mean_s,
        schema: version,
    })
}

/// A cell's `watchers` and `attention_s` as stored: absent in schema 1; in schema 2 both
/// present, both null (withheld) or both numbers with `watchers <= visits` and
/// `0 <= attention_s <= visits × interval length`.
fn attention(
    version: u8,
    c: &WireCell,
    length: f64,
) -> Result<(Option<u32>, Option<f64>), Rejection> {
    let cell = || format!("cell {:.40} {:.40}", c.age_bucket, c.gender);
    match (version, c.watchers, c.attention_s) {
        (1, None, None) => Ok((None, None)),
        (1, _, _) => Err(reject(
            "not the interval schema",
            format!(
                "{}: watchers/attention_s in a schema 1 message (a unit sending them must say \"schema\":2)",
                cell()
            ),
        )),
        (_, Some(None), Some(None)) => Ok((None, None)),
        (_, Some(Some(watchers)), Some(Some(seconds))) => {
            if watchers > c.visits {
                return Err(reject(
                    "bad watchers",
                    format!("{}: {watchers} watchers of {} visits", cell(), c.visits),
                ));
            }
            let most = c.visits as f64 * length;
            if !seconds.is_finite() || seconds < 0.0 || seconds > most {
                return Err(reject(
                    "bad attention_s",
                    format!(
                        "{}: {seconds}, need 0 to visits × interval length = {most}",
                        cell()
                    ),
                ));
            }
            Ok((Some(watchers), Some(seconds)))
        }
        (_, Some(_), Some(_)) => Err(reject(
            "watchers/attention_s half null",
            format!(
                "{}: watchers {:?}, attention_s {:?}: both null (withheld) or neither",
                cell(),
                c.watchers.flatten(),
                c.attention_s.flatten()
            ),
        )),
        _ => Err(reject(
            "not the interval schema",
            format!(
                "{}: schema 2 cells need watchers and attention_s (null when withheld)",
                cell()
            ),
        )),
    }
}

/// `unknown`, `N-M` (N <= M) or `N+`, N and M up to three digits.
fn valid_bucket(b: &str) -> bool {
    let num = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|c| c.is_ascii_digit());
    if b == "unknown" {
        return true;
    }
    if let Some(low) = b.strip_suffix('+') {
        return num(low);
    }
    match b.split_once('-') {
        Some((lo, hi)) if num(lo) && num(hi) => lo.parse::<u32>().ok() <= hi.parse::<u32>().ok(),
        _ => false,
    }
}

/// Unix seconds as RFC 3339 UTC, exactly as the unit writes it.
pub fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl Interval {
    /// Total published visits (suppressed buckets are not in it, by design).
    pub fn visits(&self) -> u64 {
        self.cells.iter().map(|c| c.visits as u64).sum()
    }

    /// A canonical one-line form: equal for two messages exactly when their content is equal
    /// (cells sorted, numbers as serde_json prints them). Stored beside the interval and in
    /// the conflicts table.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const GOOD: &str = r#"{"id":"hall@1795392000","unit_id":"hall","start":1795392000,"end":1795392900,"uptime_s":900.0,"frames":27000,"camera_faults":0,"cells":[{"age_bucket":"25-34","gender":"male","visits":5},{"age_bucket":"25-34","gender":"female","visits":6}],"suppressed_cells":1,"dwell_mean_s":7.5,"start_time":"2026-11-23T00:00:00Z","end_time":"2026-11-23T00:15:00Z"}"#;
    const TOPIC: &str = "agecam/hall/intervals";

    #[test]
    fn the_readme_example_parses_and_cells_are_sorted() {
        let i = parse(TOPIC, GOOD.as_bytes()).unwrap();
        assert_eq!(i.id, "hall@1795392000");
        assert_eq!(i.visits(), 11);
        assert_eq!(i.cells[0].gender, "female");
        assert_eq!(i.dwell_mean_s, Some(7.5));
        let null_dwell = GOOD.replace("\"dwell_mean_s\":7.5", "\"dwell_mean_s\":null");
        assert_eq!(
            parse(TOPIC, null_dwell.as_bytes()).unwrap().dwell_mean_s,
            None
        );
    }

    /// The canonical form (and so the digest stored with every interval) of a schema 1
    /// message, exactly as the collector wrote it before schema 2 existed: a re-delivery of
    /// an interval stored then must still be a duplicate, not a conflict.
    #[test]
    fn the_canonical_form_of_a_schema_1_message_never_changes() {
        let i = parse(TOPIC, GOOD.as_bytes()).unwrap();
        assert_eq!(
            i.canonical(),
            r#"{"id":"hall@1795392000","unit_id":"hall","start":1795392000,"end":1795392900,"uptime_s":900.0,"frames":27000,"camera_faults":0,"cells":[{"age_bucket":"25-34","gender":"female","visits":6},{"age_bucket":"25-34","gender":"male","visits":5}],"suppressed_cells":1,"dwell_mean_s":7.5}"#
        );
    }

    /// The schema 2 example of docs/fleet.md.
    pub const GOOD_V2: &str = r#"{"schema":2,"id":"kiosk-1@1795392000","unit_id":"kiosk-1","start":1795392000,"end":1795392900,"uptime_s":900.0,"frames":27000,"camera_faults":0,"cells":[{"age_bucket":"25-34","gender":"female","visits":7,"watchers":5,"attention_s":42.5},{"age_bucket":"35-44","gender":"any","visits":8,"watchers":null,"attention_s":null}],"suppressed_cells":1,"dwell_mean_s":6.2,"start_time":"2026-11-23T00:00:00Z","end_time":"2026-11-23T00:15:00Z"}"#;
    const TOPIC_V2: &str = "agecam/kiosk-1/intervals";

    #[test]
    fn schema_1_is_read_as_before_with_attention_unknown() {
        let i = parse(TOPIC, GOOD.as_bytes()).unwrap();
        assert_eq!(i.schema, 1);
        assert!(i
            .cells
            .iter()
            .all(|c| c.watchers.is_none() && c.attention_s.is_none()));
        // An explicit "schema":1 is the same message.
        let explicit = GOOD.replacen('{', "{\"schema\":1,", 1);
        assert_eq!(parse(TOPIC, explicit.as_bytes()).unwrap(), i);
    }

    #[test]
    fn schema_2_carries_watchers_and_attention_or_withholds_both() {
        let i = parse(TOPIC_V2, GOOD_V2.as_bytes()).unwrap();
        assert_eq!(i.schema, 2);
        assert_eq!(i.visits(), 15);
        let c = &i.cells[0];
        assert_eq!(
            (c.age_bucket.as_str(), c.gender.as_str(), c.visits),
            ("25-34", "female", 7)
        );
        assert_eq!((c.watchers, c.attention_s), (Some(5), Some(42.5)));
        let withheld = &i.cells[1];
        assert_eq!((withheld.watchers, withheld.attention_s), (None, None));
        // Its canonical form names the schema and the known attention only.
        assert_eq!(
            i.canonical(),
            r#"{"id":"kiosk-1@1795392000","unit_id":"kiosk-1","start":1795392000,"end":1795392900,"uptime_s":900.0,"frames":27000,"camera_faults":0,"cells":[{"age_bucket":"25-34","gender":"female","visits":7,"watchers":5,"attention_s":42.5},{"age_bucket":"35-44","gender":"any","visits":8}],"suppressed_cells":1,"dwell_mean_s":6.2,"schema":2}"#
        );
        // The bounds themselves are allowed: every visitor watched the whole interval; nobody watched.
        for (w, a) in [("7", "6300.0"), ("0", "0.0"), ("0", "0")] {
            let edge = GOOD_V2
                .replace("\"watchers\":5", &format!("\"watchers\":{w}"))
                .replace("\"attention_s\":42.5", &format!("\"attention_s\":{a}"));
            assert!(parse(TOPIC_V2, edge.as_bytes()).is_ok(), "{w} {a}");
        }
        // A different attention under the same id is different content (a conflict).
        let other = GOOD_V2.replace("\"watchers\":5", "\"watchers\":4");
        assert_ne!(
            parse(TOPIC_V2, other.as_bytes()).unwrap().canonical(),
            i.canonical()
        );
    }

    /// Every rule of schema 2 (and of the `schema` key), each rejected with its kind.
    #[test]
    fn bad_attention_and_unknown_schemas_are_rejected_with_their_kind() {
        let w = |from: &str, to: &str| {
            assert!(GOOD_V2.contains(from), "{from}");
            GOOD_V2.replacen(from, to, 1)
        };
        let v1 = |from: &str, to: &str| {
            assert!(GOOD.contains(from), "{from}");
            GOOD.replacen(from, to, 1)
        };
        let schema = "schema";
        let shape = "not the interval schema";
        let cases: Vec<(&str, &str, String)> = vec![
            ("schema 3", schema, w("\"schema\":2", "\"schema\":3")),
            (
                "schema 3 with fields of its own",
                schema,
                w("\"schema\":2", "\"schema\":3,\"gaze\":[1]").replace(
                    "\"attention_s\":42.5}",
                    "\"attention_s\":42.5,\"smiles\":2}",
                ),
            ),
            ("schema 0", schema, w("\"schema\":2", "\"schema\":0")),
            ("schema -1", schema, w("\"schema\":2", "\"schema\":-1")),
            ("schema 2.5", schema, w("\"schema\":2", "\"schema\":2.5")),
            (
                "schema as a string",
                schema,
                w("\"schema\":2", "\"schema\":\"2\""),
            ),
            ("schema null", schema, w("\"schema\":2", "\"schema\":null")),
            (
                "schema 1 cell with watchers",
                shape,
                v1(
                    "\"visits\":5}",
                    "\"visits\":5,\"watchers\":1,\"attention_s\":2.0}",
                ),
            ),
            (
                "schema 1 cell with null attention",
                shape,
                v1(
                    "\"visits\":5}",
                    "\"visits\":5,\"watchers\":null,\"attention_s\":null}",
                ),
            ),
            (
                "schema 1 cell with attention_s alone",
                shape,
                v1("\"visits\":5}", "\"visits\":5,\"attention_s\":2.0}"),
            ),
            (
                "schema 2 cell without watchers",
                shape,
                w("\"watchers\":5,", ""),
            ),
            (
                "schema 2 cell without attention_s",
                shape,
                w(",\"attention_s\":42.5", ""),
            ),
            (
                "schema 2 withheld cell without its keys",
                shape,
                w(",\"watchers\":null,\"attention_s\":null", ""),
            ),
            (
                "schema 2 cell with an unknown key",
                shape,
                w(
                    "\"attention_s\":42.5}",
                    "\"attention_s\":42.5,\"smiles\":2}",
                ),
            ),
            (
                "negative watchers",
                shape,
                w("\"watchers\":5", "\"watchers\":-5"),
            ),
            (
                "fractional watchers",
                shape,
                w("\"watchers\":5", "\"watchers\":4.5"),
            ),
            (
                "string watchers",
                shape,
                w("\"watchers\":5", "\"watchers\":\"5\""),
            ),
            (
                "more watchers than visits",
                "bad watchers",
                w("\"watchers\":5", "\"watchers\":8"),
            ),
            (
                "attention beyond visits × length",
                "bad attention_s",
                w("\"attention_s\":42.5", "\"attention_s\":6300.5"),
            ),
            (
                "negative attention",
                "bad attention_s",
                w("\"attention_s\":42.5", "\"attention_s\":-0.5"),
            ),
            (
                "watchers null, attention_s not",
                "watchers/attention_s half null",
                w("\"watchers\":5", "\"watchers\":null"),
            ),
            (
                "attention_s null, watchers not",
                "watchers/attention_s half null",
                w("\"attention_s\":42.5", "\"attention_s\":null"),
            ),
            (
                "withheld watchers with attention",
                "watchers/attention_s half null",
                w(
                    "\"watchers\":null,\"attention_s\":null",
                    "\"watchers\":null,\"attention_s\":0.0",
                ),
            ),
        ];
        for (name, kind, payload) in &cases {
            let topic = if payload.contains("\"unit_id\":\"hall\"") {
                TOPIC
            } else {
                TOPIC_V2
            };
            match std::panic::catch_unwind(|| parse(topic, payload.as_bytes())) {
                Ok(Err(r)) => assert_eq!(r.kind, *kind, "{name}: {r}"),
                Ok(Ok(i)) => panic!("{name}: accepted {i:?}"),
                Err(_) => panic!("{name}: panicked"),
            }
        }
        let future = parse(TOPIC_V2, w("\"schema\":2", "\"schema\":3").as_bytes()).unwrap_err();
        assert!(
            future.detail.contains("schema 3") && future.detail.contains("upgrade agecam-fleet"),
            "{future}"
        );
        assert!(
            parse(TOPIC_V2, GOOD_V2.as_bytes()).is_ok(),
            "the control case passes"
        );
    }

    #[test]
    fn topics_name_their_unit() {
        assert_eq!(unit_of_topic("agecam/hall/intervals"), Some("hall"));
        assert_eq!(unit_of_topic("acme/kiosks/b-2/intervals"), Some("b-2"));
        assert_eq!(unit_of_topic("hall/intervals"), Some("hall"));
        assert_eq!(unit_of_topic("/intervals"), None);
        assert_eq!(unit_of_topic("agecam/hall/other"), None);
        assert_eq!(unit_of_topic("agecam/ha ll/intervals"), None);
    }

    /// Hostile and malformed payloads: every one is rejected, none panics.
    #[test]
    fn hostile_payloads_are_rejected_without_panicking() {
        let mut deep = String::new();
        for _ in 0..100_000 {
            deep.push('[');
        }
        let mut deep_field = GOOD.trim_end_matches('}').to_string();
        deep_field.push_str(",\"extra\":");
        deep_field.push_str(&"{\"a\":".repeat(50_000));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("huge", vec![b' '; MAX_PAYLOAD + 1]),
            ("huge valid-looking", {
                let mut s = GOOD.trim_end_matches('}').to_string();
                s.push_str(&format!(",\"pad\":\"{}\"}}", "x".repeat(MAX_PAYLOAD)));
                s.into_bytes()
            }),
            ("binary", (0..=255u8).cycle().take(4096).collect()),
            ("invalid UTF-8", b"{\"id\":\"\xff\xfe\"}".to_vec()),
            ("deeply nested arrays", deep.into_bytes()),
            ("deeply nested in a field", deep_field.into_bytes()),
            ("not an object", b"[1,2,3]".to_vec()),
            ("null", b"null".to_vec()),
            ("NaN literal", GOOD.replace("900.0", "NaN").into_bytes()),
            ("Infinity", GOOD.replace("900.0", "Infinity").into_bytes()),
            (
                "overflowing float",
                GOOD.replace("900.0", "1e999").into_bytes(),
            ),
            (
                "negative visits",
                GOOD.replace("\"visits\":5", "\"visits\":-5").into_bytes(),
            ),
            (
                "fractional visits",
                GOOD.replace("\"visits\":5", "\"visits\":5.5").into_bytes(),
            ),
            ("negative frames", GOOD.replace("27000", "-1").into_bytes()),
            (
                "frames beyond i64",
                GOOD.replace("27000", "18446744073709551615").into_bytes(),
            ),
            (
                "negative suppressed",
                GOOD.replace("\"suppressed_cells\":1", "\"suppressed_cells\":-1")
                    .into_bytes(),
            ),
            (
                "string count",
                GOOD.replace("27000", "\"27000\"").into_bytes(),
            ),
            (
                "unknown field",
                GOOD.replace("\"frames\"", "\"face\":\"x\",\"frames\"")
                    .into_bytes(),
            ),
            (
                "unknown cell field",
                GOOD.replace("\"visits\":5}", "\"visits\":5,\"person\":1}")
                    .into_bytes(),
            ),
            (
                "missing field",
                GOOD.replace("\"camera_faults\":0,", "").into_bytes(),
            ),
            (
                "missing dwell",
                GOOD.replace(",\"dwell_mean_s\":7.5", "").into_bytes(),
            ),
            (
                "duplicate key",
                GOOD.replace("\"frames\":27000", "\"frames\":27000,\"frames\":1")
                    .into_bytes(),
            ),
            (
                "end before start",
                GOOD.replace("\"end\":1795392900", "\"end\":1795391000")
                    .into_bytes(),
            ),
            (
                "end equals start",
                GOOD.replace("\"end\":1795392900", "\"end\":1795392000")
                    .into_bytes(),
            ),
            (
                "negative start",
                GOOD.replace("\"start\":1795392000", "\"start\":-900")
                    .into_bytes(),
            ),
            (
                "id not unit@start",
                GOOD.replace("hall@1795392000", "hall@1").into_bytes(),
            ),
            (
                "id of another unit",
                GOOD.replace("hall@", "hallx@").into_bytes(),
            ),
            (
                "unit not the topic's",
                GOOD.replace("\"unit_id\":\"hall\"", "\"unit_id\":\"lobby\"")
                    .replace("hall@", "lobby@")
                    .into_bytes(),
            ),
            (
                "unit with a slash",
                GOOD.replace("\"unit_id\":\"hall\"", "\"unit_id\":\"ha/ll\"")
                    .into_bytes(),
            ),
            (
                "start_time wrong",
                GOOD.replace("2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z")
                    .into_bytes(),
            ),
            (
                "uptime beyond interval",
                GOOD.replace("900.0", "5000.0").into_bytes(),
            ),
            (
                "negative uptime",
                GOOD.replace("900.0", "-1.0").into_bytes(),
            ),
            ("negative dwell", GOOD.replace("7.5", "-7.5").into_bytes()),
            (
                "bad gender",
                GOOD.replace("\"male\"", "\"robot\"").into_bytes(),
            ),
            (
                "bad bucket",
                GOOD.replace(
                    "\"25-34\",\"gender\":\"male\"",
                    "\"<script>\",\"gender\":\"male\"",
                )
                .into_bytes(),
            ),
            (
                "duplicate cell",
                GOOD.replace("\"gender\":\"female\"", "\"gender\":\"male\"")
                    .into_bytes(),
            ),
            (
                "cells not a list",
                GOOD.replace("\"cells\":[", "\"cells\":{\"a\":[")
                    .replace("}],\"supp", "}]},\"supp")
                    .into_bytes(),
            ),
            ("trailing garbage", format!("{GOOD} x").into_bytes()),
            ("two objects", format!("{GOOD}{GOOD}").into_bytes()),
        ];
        for (name, payload) in &cases {
            let result = std::panic::catch_unwind(|| parse(TOPIC, payload));
            match result {
                Ok(Err(r)) => assert!(!r.kind.is_empty(), "{name}"),
                Ok(Ok(i)) => panic!("{name}: accepted {i:?}"),
                Err(_) => panic!("{name}: panicked"),
            }
        }
        assert!(parse("agecam/hall/wrong", GOOD.as_bytes()).is_err());
        assert!(
            parse(TOPIC, GOOD.as_bytes()).is_ok(),
            "the control case passes"
        );
    }

    #[test]
    fn buckets() {
        for ok in ["0-12", "65+", "unknown", "25-34"] {
            assert!(valid_bucket(ok), "{ok}");
        }
        for bad in ["", "-", "34-25", "a-b", "1234-2000", "+", "65++", "x"] {
            assert!(!valid_bucket(bad), "{bad}");
        }
    }
}
