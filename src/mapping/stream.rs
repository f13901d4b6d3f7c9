//! `duijie map` on a file of any size: read in bounded chunks, map on every
//! core, write in input order as it goes.
//!
//! One reader thread cuts the input into chunks of whole lines (about
//! [`StreamOptions::chunk_bytes`] each) and numbers them; worker threads map
//! a chunk at a time into output and reject bytes; the calling thread
//! writes finished chunks in their order. Every channel is bounded, so at
//! most a few chunks per worker are in memory whatever the input size: the
//! resident set is flat in the input.
//!
//! JSON lines in; out, JSON lines (what the golden fixtures and
//! `referrals replay` / `deliveries preview` read) or an Avro object container
//! file (apache-avro's writer, the schema in its header). Rejects are JSON
//! lines with the input line number, the field, the rule, the reason and
//! the raw line: none is dropped.

use super::{Mapping, PayloadFormat};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, sync_channel};

/// What `duijie map` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// JSON lines, one canonical record a line.
    #[default]
    Json,
    /// An Avro object container file of the mapping's schema.
    Avro,
}

#[derive(Debug, Clone)]
pub struct StreamOptions {
    pub format: OutputFormat,
    /// Mapping threads (at least 1).
    pub threads: usize,
    /// About how many input bytes a chunk holds.
    pub chunk_bytes: usize,
    /// The time `past` conditions compare with: one for the whole run.
    pub now_ms: i64,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            format: OutputFormat::Json,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            chunk_bytes: 1 << 20,
            now_ms: chrono::Utc::now().timestamp_millis(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCounts {
    pub records: u64,
    pub rejects: u64,
    /// Input bytes consumed.
    pub bytes: u64,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("reading the input: {0}")]
    Read(#[source] std::io::Error),
    #[error("writing: {0}")]
    Write(#[source] std::io::Error),
    #[error("writing Avro: {0}")]
    Avro(String),
    #[error("{0}")]
    Mapping(String),
}

impl From<StreamError> for crate::error::Error {
    fn from(e: StreamError) -> Self {
        let domain = match e {
            StreamError::Read(_) | StreamError::Write(_) => crate::error::Domain::Io,
            _ => crate::error::Domain::Mapping,
        };
        Self::new(domain, crate::error::ErrorClass::Permanent, e)
    }
}

struct Chunk {
    seq: u64,
    /// The input line number of the chunk's first line (from 1).
    first_line: usize,
    data: Vec<u8>,
}

/// A mapped chunk.
struct Done {
    seq: u64,
    out: Out,
    rejects: Vec<u8>,
    counts: StreamCounts,
}

enum Out {
    Json(Vec<u8>),
    Avro(Vec<apache_avro::types::Value>),
}

/// Maps `input` into `out` and `rejects`, calling `progress` with the
/// input bytes consumed so far after each chunk written.
pub fn stream_map(
    mapping: &Mapping,
    input: impl BufRead + Send,
    out: impl Write,
    rejects: impl Write,
    options: &StreamOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<StreamCounts, StreamError> {
    if mapping.format == PayloadFormat::Xml {
        return Err(StreamError::Mapping(format!(
            "mapping `{}` reads XML: one document is one record, map it with the whole file",
            mapping.name
        )));
    }
    let threads = options.threads.max(1);
    let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(threads * 2);
    let (done_tx, done_rx) = sync_channel::<Done>(threads * 2);
    let chunk_rx = Mutex::new(chunk_rx);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_chunks(input, options.chunk_bytes, &chunk_tx));
        for _ in 0..threads {
            let (done_tx, chunk_rx) = (done_tx.clone(), &chunk_rx);
            scope.spawn(move || {
                loop {
                    let next = chunk_rx.lock().expect("chunk lock").recv();
                    let Ok(chunk) = next else { return };
                    let done = map_chunk(mapping, chunk, options);
                    if done_tx.send(done).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let written = write_in_order(mapping, done_rx, out, rejects, options.format, progress);
        // A write error drops the receiver: workers and reader stop.
        let read = reader.join().expect("the reader thread does not panic");
        let counts = written?;
        read.map_err(StreamError::Read)?;
        Ok(counts)
    })
}

/// Cuts the input into chunks of whole lines.
fn read_chunks(
    mut input: impl BufRead,
    chunk_bytes: usize,
    tx: &std::sync::mpsc::SyncSender<Chunk>,
) -> std::io::Result<()> {
    let (mut seq, mut line) = (0u64, 1usize);
    loop {
        let mut data = Vec::with_capacity(chunk_bytes + 4096);
        let mut lines = 0;
        while data.len() < chunk_bytes {
            let n = input.read_until(b'\n', &mut data)?;
            if n == 0 {
                break;
            }
            lines += 1;
        }
        if lines == 0 {
            return Ok(());
        }
        if tx
            .send(Chunk {
                seq,
                first_line: line,
                data,
            })
            .is_err()
        {
            return Ok(());
        }
        seq += 1;
        line += lines;
    }
}

fn map_chunk(mapping: &Mapping, chunk: Chunk, options: &StreamOptions) -> Done {
    let mut counts = StreamCounts {
        bytes: chunk.data.len() as u64,
        ..StreamCounts::default()
    };
    let mut json_out = Vec::with_capacity(chunk.data.len() * 2);
    let mut avro_out = Vec::new();
    let mut rejects = Vec::new();
    let mut datum = Vec::new();
    let body = if chunk.seq == 0 {
        chunk
            .data
            .strip_prefix(b"\xEF\xBB\xBF")
            .unwrap_or(&chunk.data)
    } else {
        &chunk.data[..]
    };
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reject = |rejects: &mut Vec<u8>, field: Option<String>, rule: &str, reason: String| {
            let r = json!({
                "line": chunk.first_line + i,
                "field": field,
                "rule": rule,
                "reason": reason,
                "raw": String::from_utf8_lossy(line),
            });
            serde_json::to_writer(&mut *rejects, &r).expect("JSON to memory");
            rejects.push(b'\n');
        };
        match mapping.map_at(line, options.now_ms) {
            Ok(mapped) => match options.format {
                OutputFormat::Json => {
                    counts.records += 1;
                    serde_json::to_writer(&mut json_out, &mapping.to_json(&mapped))
                        .expect("JSON to memory");
                    json_out.push(b'\n');
                }
                OutputFormat::Avro => {
                    datum.clear();
                    // The hub's own encoder (what goes on the bus), read
                    // back as apache-avro values for its container writer.
                    let value =
                        crate::schema::RecordEncoder::new(crate::schema::Encoding::SingleObject)
                            .encode(&mapping.schema, &mapped.values, &mut datum)
                            .map_err(|e| e.to_string())
                            .and_then(|()| mapping.schema.decode_single_object(&datum));
                    match value {
                        Ok(v) => {
                            counts.records += 1;
                            avro_out.push(v);
                        }
                        Err(why) => {
                            counts.rejects += 1;
                            reject(&mut rejects, None, "encode", why);
                        }
                    }
                }
            },
            Err(r) => {
                counts.rejects += 1;
                reject(&mut rejects, r.field, r.rule, r.reason);
            }
        }
    }
    Done {
        seq: chunk.seq,
        out: match options.format {
            OutputFormat::Json => Out::Json(json_out),
            OutputFormat::Avro => Out::Avro(avro_out),
        },
        rejects,
        counts,
    }
}

/// Where mapped records go: JSON lines, or apache-avro's container writer.
enum Sink<'s, W: Write> {
    Json(W),
    Avro(Box<apache_avro::Writer<'s, W>>),
}

fn write_in_order(
    mapping: &Mapping,
    done: Receiver<Done>,
    out: impl Write,
    mut rejects: impl Write,
    format: OutputFormat,
    progress: &mut dyn FnMut(u64),
) -> Result<StreamCounts, StreamError> {
    let avro_error = |e: apache_avro::Error| StreamError::Avro(e.to_string());
    let mut sink = match format {
        OutputFormat::Json => Sink::Json(out),
        OutputFormat::Avro => Sink::Avro(Box::new(
            apache_avro::Writer::new(&mapping.schema.avro, out).map_err(avro_error)?,
        )),
    };
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let (mut next, mut total) = (0u64, StreamCounts::default());
    for d in done {
        pending.insert(d.seq, d);
        while let Some(d) = pending.remove(&next) {
            match (&mut sink, &d.out) {
                (Sink::Json(w), Out::Json(bytes)) => {
                    w.write_all(bytes).map_err(StreamError::Write)?;
                }
                (Sink::Avro(w), Out::Avro(values)) => {
                    for v in values {
                        w.append_value_ref(v).map_err(avro_error)?;
                    }
                }
                _ => unreachable!("chunks are mapped in the run's format"),
            }
            rejects.write_all(&d.rejects).map_err(StreamError::Write)?;
            total.records += d.counts.records;
            total.rejects += d.counts.rejects;
            total.bytes += d.counts.bytes;
            progress(total.bytes);
            next += 1;
        }
    }
    let mut out = match sink {
        Sink::Json(w) => w,
        Sink::Avro(w) => w.into_inner().map_err(avro_error)?,
    };
    out.flush().map_err(StreamError::Write)?;
    rejects.flush().map_err(StreamError::Write)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urban() -> std::sync::Arc<Mapping> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let schemas = crate::schema::SchemaSet::load_dir(&root.join("schemas")).expect("schemas");
        let set =
            super::super::MappingSet::load_dir(&root.join("mappings"), &schemas).expect("mappings");
        set.get("urban_case").expect("urban_case")
    }

    #[test]
    fn streaming_on_many_threads_and_small_chunks_writes_what_the_dry_run_writes_in_order() {
        let mapping = urban();
        let input = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("mappings/tests/urban_case/02_edge_cases.input.jsonl"),
        )
        .expect("fixture");
        // The fixture several times over, with a BOM, CRLF and blank lines.
        let mut big = b"\xEF\xBB\xBF".to_vec();
        for _ in 0..50 {
            big.extend_from_slice(&input);
            big.extend_from_slice(b"\r\n\n");
        }
        let reference = super::super::golden::dry_run(&mapping, &big);
        let (mut out, mut rej) = (Vec::new(), Vec::new());
        let options = StreamOptions {
            threads: 4,
            chunk_bytes: 700,
            ..StreamOptions::default()
        };
        let mut seen = Vec::new();
        let counts = stream_map(&mapping, &big[..], &mut out, &mut rej, &options, &mut |b| {
            seen.push(b)
        })
        .expect("runs");
        let lines = |b: &[u8]| -> Vec<serde_json::Value> {
            String::from_utf8_lossy(b)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        assert_eq!(lines(&out), reference.records);
        assert_eq!(lines(&rej), reference.rejects);
        assert_eq!(counts.records as usize, reference.records.len());
        assert_eq!(counts.rejects as usize, reference.rejects.len());
        assert!(
            counts.rejects > 0,
            "the fixture has rejects: the test checks their lines"
        );
        assert_eq!(counts.bytes, big.len() as u64);
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]) && seen.len() > 10,
            "{seen:?}"
        );
    }

    #[test]
    fn avro_output_is_a_container_file_of_the_schema_with_every_record() {
        let mapping = urban();
        let input = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("mappings/tests/urban_case/02_edge_cases.input.jsonl"),
        )
        .expect("fixture");
        let reference = super::super::golden::dry_run(&mapping, &input);
        let (mut out, mut rej) = (Vec::new(), Vec::new());
        let options = StreamOptions {
            format: OutputFormat::Avro,
            threads: 2,
            chunk_bytes: 500,
            ..StreamOptions::default()
        };
        stream_map(
            &mapping,
            &input[..],
            &mut out,
            &mut rej,
            &options,
            &mut |_| {},
        )
        .expect("runs");
        let reader = apache_avro::Reader::new(&out[..]).expect("a container file");
        assert_eq!(reader.writer_schema(), &mapping.schema.avro);
        let ids: Vec<String> = reader
            .map(|v| match v.expect("a record") {
                apache_avro::types::Value::Record(fields) => fields
                    .into_iter()
                    .find(|(k, _)| k == "id")
                    .map(|(_, v)| match v {
                        apache_avro::types::Value::String(s) => s,
                        other => panic!("{other:?}"),
                    })
                    .expect("an id"),
                other => panic!("{other:?}"),
            })
            .collect();
        let expected: Vec<String> = reference
            .records
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, expected);
    }
}
