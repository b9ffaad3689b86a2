//! Per-series aggregates (cumulative totals and windowed points) and their byte encodings.
//!
//! Encodings are little-endian, fixed-width and versioned by the store's schema version:
//! - aggregate: tag `1` counter `f64` | `2` gauge `f64` + source window `i64` |
//!   `3` histogram sum `f64` + `u32` n + n × `u64` counts;
//! - applied-batch record (write-ahead log): per sample `u32` series + `i64` window start +
//!   aggregate encoding;
//! - point chunk: per series, sorted by id, `u32` series + aggregate encoding.

use crate::model::{IngestBatch, SampleValue, SeriesId};

/// A value of one series: its cumulative total, or its contribution to one stored window.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Aggregate {
    /// Nothing seen yet.
    #[default]
    Empty,
    /// Sum of counter deltas.
    Counter(f64),
    /// Latest gauge value and the agent window it came from.
    Gauge {
        /// The level.
        value: f64,
        /// Agent window start (Unix ms) of `value`; a later window replaces it.
        window_start_ms: i64,
    },
    /// Element-wise sum of histogram samples.
    Histogram {
        /// Sum of observations.
        sum: f64,
        /// Per-bucket (non-cumulative) counts, last one is +Inf.
        counts: Box<[u64]>,
    },
}

/// A borrowed sample value, as applied to an [`Aggregate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// Counter increase.
    Counter(f64),
    /// Gauge level.
    Gauge(f64),
    /// Histogram bucket counts and sum.
    Histogram {
        /// Sum of observations.
        sum: f64,
        /// Per-bucket counts.
        counts: &'a [u64],
    },
}

impl<'a> ValueRef<'a> {
    /// The value of `sample`, resolving histogram counts in the batch's pool.
    pub fn of(value: &SampleValue, pool: &'a [u64]) -> Self {
        match value {
            SampleValue::Counter(v) => ValueRef::Counter(*v),
            SampleValue::Gauge(v) => ValueRef::Gauge(*v),
            SampleValue::Histogram { sum, counts } => ValueRef::Histogram {
                sum: *sum,
                counts: &pool[counts.start as usize..counts.end as usize],
            },
        }
    }
}

impl Aggregate {
    /// Adds a sample from agent window `window_start_ms`.
    pub fn apply(&mut self, window_start_ms: i64, value: ValueRef<'_>) {
        match (&mut *self, value) {
            (Aggregate::Counter(total), ValueRef::Counter(delta)) => *total += delta,
            (
                Aggregate::Gauge {
                    value: current,
                    window_start_ms: at,
                },
                ValueRef::Gauge(v),
            ) => {
                // Windows may arrive out of order (resent batches); the latest window wins.
                if window_start_ms >= *at {
                    *current = v;
                    *at = window_start_ms;
                }
            }
            (Aggregate::Histogram { sum, counts }, ValueRef::Histogram { sum: s, counts: c })
                if counts.len() == c.len() =>
            {
                *sum += s;
                for (total, add) in counts.iter_mut().zip(c) {
                    *total += add;
                }
            }
            // First sample, or (never after validation) a change of kind/shape: start over.
            (this, value) => *this = Aggregate::from_value(window_start_ms, value),
        }
    }

    /// Merges another aggregate of the same series (e.g. new contributions to a stored window).
    pub fn merge(&mut self, other: &Aggregate) {
        match other {
            Aggregate::Empty => {}
            Aggregate::Counter(v) => self.apply(0, ValueRef::Counter(*v)),
            Aggregate::Gauge {
                value,
                window_start_ms,
            } => self.apply(*window_start_ms, ValueRef::Gauge(*value)),
            Aggregate::Histogram { sum, counts } => {
                self.apply(0, ValueRef::Histogram { sum: *sum, counts })
            }
        }
    }

    fn from_value(window_start_ms: i64, value: ValueRef<'_>) -> Self {
        match value {
            ValueRef::Counter(v) => Aggregate::Counter(v),
            ValueRef::Gauge(v) => Aggregate::Gauge {
                value: v,
                window_start_ms,
            },
            ValueRef::Histogram { sum, counts } => Aggregate::Histogram {
                sum,
                counts: counts.into(),
            },
        }
    }

    /// Appends the encoding (see the module doc).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Aggregate::Empty => out.push(0),
            Aggregate::Counter(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Aggregate::Gauge {
                value,
                window_start_ms,
            } => {
                out.push(2);
                out.extend_from_slice(&value.to_le_bytes());
                out.extend_from_slice(&window_start_ms.to_le_bytes());
            }
            Aggregate::Histogram { sum, counts } => encode_histogram(*sum, counts, out),
        }
    }

    /// Decodes one aggregate from the front of `buf`.
    pub fn decode(buf: &mut &[u8]) -> Result<Aggregate, CorruptRecord> {
        let mut scratch = Vec::new();
        let (value, window) = decode_value(buf, &mut scratch)?;
        Ok(match value {
            None => Aggregate::Empty,
            Some(value) => Aggregate::from_value(window, value),
        })
    }
}

/// A stored record that does not decode (a bug or a foreign file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt store record: {0}")]
pub struct CorruptRecord(pub &'static str);

/// Appends one applied-batch record for the write-ahead log.
pub fn encode_batch(batch: &IngestBatch, out: &mut Vec<u8>) {
    out.reserve(batch.samples.len() * 21 + batch.histogram_counts.len() * 8);
    for sample in &batch.samples {
        out.extend_from_slice(&sample.series.0.to_le_bytes());
        out.extend_from_slice(&sample.window_start_ms.to_le_bytes());
        match ValueRef::of(&sample.value, &batch.histogram_counts) {
            ValueRef::Counter(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            ValueRef::Gauge(v) => {
                out.push(2);
                out.extend_from_slice(&v.to_le_bytes());
                out.extend_from_slice(&sample.window_start_ms.to_le_bytes());
            }
            ValueRef::Histogram { sum, counts } => encode_histogram(sum, counts, out),
        }
    }
}

/// Calls `f(series, window_start_ms, value)` for every sample of an applied-batch record.
pub fn decode_batch(
    mut buf: &[u8],
    mut f: impl FnMut(SeriesId, i64, ValueRef<'_>),
) -> Result<(), CorruptRecord> {
    let mut scratch = Vec::new();
    while !buf.is_empty() {
        let series = SeriesId(read_u32(&mut buf)?);
        let window = read_i64(&mut buf)?;
        match decode_value(&mut buf, &mut scratch)? {
            (Some(value), _) => f(series, window, value),
            (None, _) => return Err(CorruptRecord("empty value in applied batch")),
        }
    }
    Ok(())
}

/// Decodes a point chunk into `(series, aggregate)` pairs sorted by series.
pub fn decode_chunk(mut buf: &[u8]) -> Result<Vec<(u32, Aggregate)>, CorruptRecord> {
    let mut entries = Vec::new();
    while !buf.is_empty() {
        let series = read_u32(&mut buf)?;
        entries.push((series, Aggregate::decode(&mut buf)?));
    }
    Ok(entries)
}

/// Encodes sorted `(series, aggregate)` pairs as a point chunk.
pub fn encode_chunk(entries: &[(u32, Aggregate)], out: &mut Vec<u8>) {
    for (series, aggregate) in entries {
        out.extend_from_slice(&series.to_le_bytes());
        aggregate.encode(out);
    }
}

fn encode_histogram(sum: f64, counts: &[u64], out: &mut Vec<u8>) {
    out.push(3);
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(&(counts.len() as u32).to_le_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_le_bytes());
    }
}

/// Decodes a tagged value; histogram counts land in `scratch`. Returns the value (None for
/// `Empty`) and the gauge's source window (0 otherwise).
fn decode_value<'s>(
    buf: &mut &[u8],
    scratch: &'s mut Vec<u64>,
) -> Result<(Option<ValueRef<'s>>, i64), CorruptRecord> {
    let (&tag, rest) = buf.split_first().ok_or(CorruptRecord("truncated tag"))?;
    *buf = rest;
    Ok(match tag {
        0 => (None, 0),
        1 => (Some(ValueRef::Counter(read_f64(buf)?)), 0),
        2 => {
            let value = read_f64(buf)?;
            let window = read_i64(buf)?;
            (Some(ValueRef::Gauge(value)), window)
        }
        3 => {
            let sum = read_f64(buf)?;
            let n = read_u32(buf)? as usize;
            if buf.len() < n * 8 {
                return Err(CorruptRecord("truncated histogram"));
            }
            scratch.clear();
            scratch.extend(
                buf[..n * 8]
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))),
            );
            *buf = &buf[n * 8..];
            (
                Some(ValueRef::Histogram {
                    sum,
                    counts: scratch,
                }),
                0,
            )
        }
        _ => return Err(CorruptRecord("unknown value tag")),
    })
}

fn read_array<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], CorruptRecord> {
    if buf.len() < N {
        return Err(CorruptRecord("truncated number"));
    }
    let (head, rest) = buf.split_at(N);
    *buf = rest;
    Ok(head.try_into().expect("N bytes"))
}

fn read_u32(buf: &mut &[u8]) -> Result<u32, CorruptRecord> {
    read_array(buf).map(u32::from_le_bytes)
}

fn read_i64(buf: &mut &[u8]) -> Result<i64, CorruptRecord> {
    read_array(buf).map(i64::from_le_bytes)
}

fn read_f64(buf: &mut &[u8]) -> Result<f64, CorruptRecord> {
    read_array(buf).map(f64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IngestSample;

    #[test]
    fn batch_record_round_trips() {
        let batch = IngestBatch {
            seq: 1,
            samples: vec![
                IngestSample {
                    series: SeriesId(3),
                    window_start_ms: 60_000,
                    value: SampleValue::Counter(2.5),
                },
                IngestSample {
                    series: SeriesId(4),
                    window_start_ms: 120_000,
                    value: SampleValue::Gauge(-1.0),
                },
                IngestSample {
                    series: SeriesId(5),
                    window_start_ms: 60_000,
                    value: SampleValue::Histogram {
                        sum: 9.0,
                        counts: 0..3,
                    },
                },
            ],
            histogram_counts: vec![1, 2, 3],
            ..IngestBatch::default()
        };
        let mut buf = Vec::new();
        encode_batch(&batch, &mut buf);
        let mut seen = Vec::new();
        decode_batch(&buf, |s, w, v| {
            let mut a = Aggregate::Empty;
            a.apply(w, v);
            seen.push((s, w, a));
        })
        .expect("decodes");
        assert_eq!(
            seen,
            vec![
                (SeriesId(3), 60_000, Aggregate::Counter(2.5)),
                (
                    SeriesId(4),
                    120_000,
                    Aggregate::Gauge {
                        value: -1.0,
                        window_start_ms: 120_000
                    }
                ),
                (
                    SeriesId(5),
                    60_000,
                    Aggregate::Histogram {
                        sum: 9.0,
                        counts: vec![1, 2, 3].into()
                    }
                ),
            ]
        );
    }

    #[test]
    fn gauge_keeps_latest_window_and_counters_add() {
        let mut g = Aggregate::Empty;
        g.apply(200, ValueRef::Gauge(2.0));
        g.apply(100, ValueRef::Gauge(1.0));
        assert_eq!(
            g,
            Aggregate::Gauge {
                value: 2.0,
                window_start_ms: 200
            }
        );
        let mut c = Aggregate::Counter(1.0);
        c.merge(&Aggregate::Counter(2.0));
        assert_eq!(c, Aggregate::Counter(3.0));
    }

    #[test]
    fn chunk_round_trips_and_rejects_garbage() {
        let entries = vec![
            (1, Aggregate::Counter(1.0)),
            (
                7,
                Aggregate::Histogram {
                    sum: 1.5,
                    counts: vec![0, 1].into(),
                },
            ),
        ];
        let mut buf = Vec::new();
        encode_chunk(&entries, &mut buf);
        assert_eq!(decode_chunk(&buf).expect("decodes"), entries);
        assert!(decode_chunk(&buf[..buf.len() - 1]).is_err());
        assert!(decode_chunk(&[0, 0, 0, 0, 9]).is_err());
    }
}
