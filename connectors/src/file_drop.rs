//! File drop: a directory that partner systems (or an SFTP front end) drop
//! export files into.
//!
//! - Files are taken in name order once they are complete: names ending in
//!   `.part`, `.tmp`, `.partial` or starting with `.` are still being written
//!   (rename-on-complete), and a file must keep the same size for `settle`
//!   before it is read (stable-size check).
//! - JSON-lines files are streamed line by line; the cursor is the byte
//!   offset, so a restart resumes mid-file and never re-reads what was
//!   committed. JSON and XML documents are read whole, up to
//!   `max_file_bytes`, and split into records.
//! - A finished file moves to `done/`; a file that cannot be read at all
//!   (unknown encoding, malformed or truncated document, too large) moves to
//!   `rejected/` with a `<name>.reason.txt` beside it, and is also sent to
//!   the dead-letter topic. Originals are never deleted. Moves happen only
//!   after the runtime says the file's last batch is durable.

use crate::record::now_ms;
use crate::text::{self, DecodeError};
use crate::xml_split;
use crate::{Batch, Cursor, PayloadFormat, RawRecord, RawReject, Source, SourceError};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How the records are laid out in a dropped file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileLayout {
    /// One JSON object per line (`.jsonl`, `.ndjson`).
    Jsonl,
    /// One JSON document: an object (one record) or an array of records.
    Json,
    /// One XML document holding `record_element` elements.
    Xml,
}

/// Configuration of a file-drop source.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileDropConfig {
    /// Directory to watch. `done/` and `rejected/` are created inside it.
    pub dir: PathBuf,
    /// Layout of the files: `jsonl`, `json` or `xml`.
    pub layout: FileLayout,
    /// File name suffixes to take, e.g. `[".jsonl", ".ndjson"]`. Defaults to
    /// the usual suffixes of the layout.
    #[serde(default)]
    pub suffixes: Vec<String>,
    /// For XML: local name of the element that holds one record.
    #[serde(default)]
    pub record_element: Option<String>,
    /// For JSON documents: JSON pointer to the array of records inside an
    /// object, e.g. `/data/cases`. Without it, an array document is the
    /// list of records and an object document is one record.
    #[serde(default)]
    pub records_pointer: Option<String>,
    /// Encoding when a file has no BOM (and, for XML, no declaration):
    /// `utf-8` (default), `gbk`, `gb18030`, or `auto` for exchanges that mix
    /// them (UTF-8 when the bytes are valid UTF-8, else GB18030).
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// How long a file's size must stay unchanged before it is read.
    #[serde(default = "default_settle", with = "humantime_serde")]
    pub settle: Duration,
    /// A record larger than this goes to the dead-letter topic instead of
    /// being mapped.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// JSON and XML documents are read whole; larger files are rejected.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

fn default_encoding() -> String {
    "utf-8".into()
}
fn default_settle() -> Duration {
    Duration::from_secs(1)
}
fn default_max_record_bytes() -> usize {
    1 << 20
}
fn default_max_file_bytes() -> u64 {
    256 << 20
}

impl FileDropConfig {
    /// Checks what serde cannot: an XML layout needs its record element,
    /// the encoding label must be known.
    pub fn validate(&self) -> Result<(), String> {
        if self.layout == FileLayout::Xml && self.record_element.is_none() {
            return Err("layout `xml` needs `record_element`".into());
        }
        text::Charset::parse(&self.encoding).map_err(|e| e.to_string())?;
        if self.max_record_bytes == 0 {
            return Err("`max_record_bytes` must be greater than 0".into());
        }
        Ok(())
    }

    fn suffixes(&self) -> Vec<String> {
        if !self.suffixes.is_empty() {
            return self.suffixes.clone();
        }
        match self.layout {
            FileLayout::Jsonl => vec![".jsonl".into(), ".ndjson".into()],
            FileLayout::Json => vec![".json".into()],
            FileLayout::Xml => vec![".xml".into()],
        }
    }
}

/// Where the source stands: inside which file, how far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FileCursor {
    file: String,
    /// JSON lines: byte offset after the last line taken. Documents: number
    /// of records taken.
    offset: u64,
    /// 1-based number of the last line (JSON lines) taken.
    line: u64,
    /// Every record of the file is in this or an earlier batch.
    finished: bool,
    /// The file could not be read; why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rejected: Option<String>,
}

/// The file currently being read.
#[derive(Debug)]
struct Current {
    name: String,
    offset: u64,
    line: u64,
    /// Records of a whole-document file, split once.
    records: Option<Vec<(String, Bytes)>>,
}

/// A directory watched for dropped files.
#[derive(Debug)]
pub struct FileDrop {
    config: FileDropConfig,
    charset: text::Charset,
    current: Option<Current>,
    /// Files whose last batch was emitted but is not yet durable.
    awaiting_commit: HashSet<String>,
    /// Size and time of first sighting at that size, for the stable-size check.
    sightings: HashMap<String, (u64, SystemTime)>,
    /// The mean length of the lines the last batch read: a batch's buffer
    /// is sized from it once, instead of growing (and copying) as it fills.
    line_bytes: usize,
}

impl FileDrop {
    pub fn new(config: FileDropConfig) -> Result<Self, SourceError> {
        config.validate().map_err(SourceError::permanent)?;
        let charset = text::Charset::parse(&config.encoding)
            .map_err(|e| SourceError::permanent(e.to_string()))?;
        Ok(Self {
            config,
            charset,
            current: None,
            awaiting_commit: HashSet::new(),
            sightings: HashMap::new(),
            line_bytes: 1024,
        })
    }

    fn done_dir(&self) -> PathBuf {
        self.config.dir.join("done")
    }

    fn rejected_dir(&self) -> PathBuf {
        self.config.dir.join("rejected")
    }

    /// The next complete file in the inbox, in name order.
    fn next_ready_file(&mut self) -> Result<Option<String>, SourceError> {
        let suffixes = self.config.suffixes();
        let entries = std::fs::read_dir(&self.config.dir)
            .map_err(|e| SourceError::io(format!("reading {}", self.config.dir.display()), e))?;
        let mut names: Vec<(String, u64, SystemTime)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| SourceError::io("listing inbox", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.')
                || [".part", ".tmp", ".partial", ".reason.txt"]
                    .iter()
                    .any(|s| name.ends_with(s))
                || !suffixes.iter().any(|s| name.ends_with(s.as_str()))
                || self.awaiting_commit.contains(&name)
            {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) if m.is_file() => m,
                _ => continue,
            };
            names.push((
                name,
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ));
        }
        names.sort();
        let now = SystemTime::now();
        let mut ready = None;
        let mut seen = HashMap::new();
        for (name, len, _mtime) in names {
            let first_seen = match self.sightings.get(&name) {
                Some((l, t)) if *l == len => *t,
                _ => now,
            };
            seen.insert(name.clone(), (len, first_seen));
            let settled = now.duration_since(first_seen).unwrap_or_default() >= self.config.settle;
            if ready.is_none() && settled {
                ready = Some(name);
            }
        }
        self.sightings = seen;
        Ok(ready)
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.config.dir.join(name)
    }

    fn read_jsonl(&mut self, max: usize) -> Result<Batch, SourceError> {
        let cur = self.current.as_mut().expect("a current file");
        let path = self.config.dir.join(&cur.name);
        let file = std::fs::File::open(&path)
            .map_err(|e| SourceError::io(format!("opening {}", path.display()), e))?;
        let mut reader = std::io::BufReader::with_capacity(256 << 10, file);
        reader
            .seek(SeekFrom::Start(cur.offset))
            .map_err(|e| SourceError::io(format!("seeking {}", path.display()), e))?;
        let fetched_at_ms = now_ms();
        // The batch's lines are read into one buffer, and each record's
        // payload is a slice of it (`Bytes`): a line is copied once, from
        // the reader, and no record has an allocation of its own.
        let mut whole = batch_buffer(self.line_bytes, max, reader.get_ref(), cur.offset);
        let mut taken: Vec<(Taken, String)> = Vec::new();
        let mut rejects = Vec::new();
        let mut finished = false;
        while taken.len() + rejects.len() < max {
            let start = whole.len();
            let n = read_line_limited(&mut reader, &mut whole, start, self.config.max_record_bytes)
                .map_err(|e| SourceError::io(format!("reading {}", path.display()), e))?;
            if n.consumed == 0 {
                finished = true;
                break;
            }
            let at_start = cur.offset == 0;
            cur.offset += n.consumed as u64;
            cur.line += 1;
            let origin = format!("{}:{}", cur.name, cur.line);
            let (mut from, mut to) = (start, whole.len());
            if at_start && whole[from..to].starts_with(&[0xEF, 0xBB, 0xBF]) {
                from += 3;
            }
            while to > from && matches!(whole[to - 1], b'\n' | b'\r') {
                to -= 1;
            }
            let line = &whole[from..to];
            if n.truncated {
                rejects.push(RawReject {
                    payload: Bytes::copy_from_slice(line),
                    truncated: true,
                    length: Some(n.content_len as u64),
                    fetched_at_ms,
                    origin,
                    reason: format!(
                        "record is larger than max_record_bytes ({} bytes)",
                        self.config.max_record_bytes
                    ),
                });
                whole.truncate(start);
                continue;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                whole.truncate(start);
                continue;
            }
            match self.charset.decode(line) {
                Ok(std::borrow::Cow::Borrowed(_)) => taken.push((Taken::Slice(from, to), origin)),
                Ok(std::borrow::Cow::Owned(text)) => {
                    taken.push((Taken::Decoded(Bytes::from(text)), origin));
                    whole.truncate(start);
                }
                Err(e) => {
                    rejects.push(RawReject {
                        payload: Bytes::copy_from_slice(line),
                        truncated: false,
                        length: None,
                        fetched_at_ms,
                        origin,
                        reason: format!("line is not readable text: {e}"),
                    });
                    whole.truncate(start);
                }
            }
        }
        if !taken.is_empty() {
            self.line_bytes = (whole.len() / taken.len()).max(64);
        }
        let records = Taken::records(whole, taken, fetched_at_ms);
        if !finished {
            // Peek: if nothing follows, this batch finishes the file.
            finished = reader
                .fill_buf()
                .map(|b| b.is_empty())
                .map_err(|e| SourceError::io(format!("reading {}", path.display()), e))?;
        }
        let cursor = FileCursor {
            file: cur.name.clone(),
            offset: cur.offset,
            line: cur.line,
            finished,
            rejected: None,
        };
        Ok(Batch {
            records,
            rejects,
            cursor: Cursor::encode(&cursor),
        })
    }

    /// Reads and splits a whole JSON or XML document.
    fn load_document(&self, name: &str) -> Result<Vec<(String, Bytes)>, (String, Bytes)> {
        let path = self.path_of(name);
        let bytes = match std::fs::metadata(&path) {
            Ok(m) if m.len() > self.config.max_file_bytes => {
                let head = read_head(&path, self.config.max_record_bytes);
                return Err((
                    format!(
                        "file is {} bytes, more than max_file_bytes ({})",
                        m.len(),
                        self.config.max_file_bytes
                    ),
                    head,
                ));
            }
            _ => match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => return Err((format!("cannot read file: {e}"), Bytes::new())),
            },
        };
        let keep =
            |b: &[u8]| Bytes::copy_from_slice(&b[..b.len().min(self.config.max_record_bytes)]);
        match self.config.layout {
            FileLayout::Xml => {
                let text = self
                    .charset
                    .decode_xml(&bytes)
                    .map_err(|e: DecodeError| (format!("cannot decode XML: {e}"), keep(&bytes)))?;
                let element = self.config.record_element.as_deref().unwrap_or_default();
                let parts = xml_split::split(&text, element)
                    .map_err(|e| (format!("cannot read XML: {e}"), keep(&bytes)))?;
                Ok(parts
                    .into_iter()
                    .map(|f| (format!("{name}:{}", f.line), Bytes::from(f.xml)))
                    .collect())
            }
            FileLayout::Json => {
                let text = self
                    .charset
                    .decode(&bytes)
                    .map_err(|e| (format!("cannot decode JSON: {e}"), keep(&bytes)))?;
                let doc: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| (format!("malformed JSON: {e}"), keep(&bytes)))?;
                let doc = match &self.config.records_pointer {
                    Some(p) => doc.pointer(p).cloned().ok_or_else(|| {
                        (format!("JSON document has nothing at `{p}`"), keep(&bytes))
                    })?,
                    None => doc,
                };
                let items = match doc {
                    serde_json::Value::Array(items) => items,
                    other => vec![other],
                };
                Ok(items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{name}#{}", i + 1), Bytes::from(v.to_string())))
                    .collect())
            }
            FileLayout::Jsonl => unreachable!("JSON lines are streamed"),
        }
    }

    fn read_document(&mut self, max: usize) -> Batch {
        let fetched_at_ms = now_ms();
        let name = self.current.as_ref().expect("a current file").name.clone();
        if self.current.as_ref().is_some_and(|c| c.records.is_none()) {
            match self.load_document(&name) {
                Ok(records) => self.current.as_mut().unwrap().records = Some(records),
                Err((reason, payload)) => {
                    let truncated = std::fs::metadata(self.path_of(&name))
                        .map(|m| m.len() as usize > payload.len())
                        .unwrap_or(false);
                    let cursor = FileCursor {
                        file: name.clone(),
                        offset: 0,
                        line: 0,
                        finished: true,
                        rejected: Some(reason.clone()),
                    };
                    return Batch {
                        records: Vec::new(),
                        rejects: vec![RawReject {
                            payload,
                            truncated,
                            length: None,
                            fetched_at_ms,
                            origin: name,
                            reason,
                        }],
                        cursor: Cursor::encode(&cursor),
                    };
                }
            }
        }
        let format = match self.config.layout {
            FileLayout::Xml => PayloadFormat::Xml,
            _ => PayloadFormat::Json,
        };
        let limit = self.config.max_record_bytes;
        let cur = self.current.as_mut().unwrap();
        let all = cur.records.as_ref().unwrap();
        let start = cur.offset as usize;
        let end = (start + max).min(all.len());
        let mut records = Vec::new();
        let mut rejects = Vec::new();
        for (origin, payload) in &all[start..end] {
            if payload.len() > limit {
                rejects.push(RawReject {
                    payload: payload.slice(..limit),
                    truncated: true,
                    length: None,
                    fetched_at_ms,
                    origin: origin.clone(),
                    reason: format!("record is larger than max_record_bytes ({limit} bytes)"),
                });
            } else {
                records.push(RawRecord {
                    payload: payload.clone(),
                    format,
                    fetched_at_ms,
                    origin: origin.clone(),
                });
            }
        }
        cur.offset = end as u64;
        let cursor = FileCursor {
            file: name,
            offset: cur.offset,
            line: 0,
            finished: end == all.len(),
            rejected: None,
        };
        Batch {
            records,
            rejects,
            cursor: Cursor::encode(&cursor),
        }
    }

    /// Moves a finished file out of the inbox, never overwriting anything.
    fn retire(&self, cursor: &FileCursor) -> Result<(), SourceError> {
        let from = self.path_of(&cursor.file);
        if !from.exists() {
            return Ok(());
        }
        let dir = if cursor.rejected.is_some() {
            self.rejected_dir()
        } else {
            self.done_dir()
        };
        let to = free_name(&dir, &cursor.file);
        std::fs::rename(&from, &to).map_err(|e| {
            SourceError::io(format!("moving {} to {}", from.display(), to.display()), e)
        })?;
        if let Some(reason) = &cursor.rejected {
            let mut reason_path = to.clone().into_os_string();
            reason_path.push(".reason.txt");
            std::fs::write(&reason_path, format!("{reason}\n"))
                .map_err(|e| SourceError::io("writing reason file", e))?;
        }
        tracing::info!(file = %cursor.file, to = %to.display(), "file retired");
        Ok(())
    }
}

#[async_trait]
impl Source for FileDrop {
    async fn open(&mut self, committed: Option<Cursor>) -> Result<(), SourceError> {
        for dir in [self.done_dir(), self.rejected_dir()] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| SourceError::io(format!("creating {}", dir.display()), e))?;
        }
        self.current = None;
        self.awaiting_commit.clear();
        let Some(committed) = committed else {
            return Ok(());
        };
        let cursor: FileCursor = committed.decode().map_err(|e| {
            SourceError::permanent(format!("stored file-drop cursor is unreadable: {e}"))
        })?;
        if cursor.finished {
            // Durable but not yet moved when the hub stopped: finish the move.
            self.retire(&cursor)?;
        } else if self.path_of(&cursor.file).exists() {
            self.current = Some(Current {
                name: cursor.file,
                offset: cursor.offset,
                line: cursor.line,
                records: None,
            });
        }
        Ok(())
    }

    async fn next_batch(&mut self, max_records: usize) -> Result<Option<Batch>, SourceError> {
        if self.current.is_none() {
            let Some(name) = self.next_ready_file()? else {
                return Ok(None);
            };
            tracing::debug!(file = %name, "taking dropped file");
            self.current = Some(Current {
                name,
                offset: 0,
                line: 0,
                records: None,
            });
        }
        let max = max_records.max(1);
        let batch = match self.config.layout {
            FileLayout::Jsonl => self.read_jsonl(max)?,
            FileLayout::Json | FileLayout::Xml => self.read_document(max),
        };
        let cursor: FileCursor = batch.cursor.decode().expect("own cursor");
        if cursor.finished {
            self.awaiting_commit.insert(cursor.file.clone());
            self.current = None;
        }
        Ok(Some(batch))
    }

    async fn committed(&mut self, cursor: &Cursor) -> Result<(), SourceError> {
        let cursor: FileCursor = cursor
            .decode()
            .map_err(|e| SourceError::permanent(format!("file-drop cursor is unreadable: {e}")))?;
        if cursor.finished {
            self.retire(&cursor)?;
            self.awaiting_commit.remove(&cursor.file);
        }
        Ok(())
    }
}

struct LineRead {
    consumed: usize,
    truncated: bool,
    /// The whole line's length, without its line end.
    content_len: usize,
}

/// A record's payload in a batch: a slice of the batch's buffer, or the
/// text a charset other than UTF-8 decoded to.
enum Taken {
    Slice(usize, usize),
    Decoded(Bytes),
}

impl Taken {
    /// The batch's records, each payload a slice of `whole` (no copy).
    fn records(whole: Vec<u8>, taken: Vec<(Taken, String)>, fetched_at_ms: i64) -> Vec<RawRecord> {
        let whole = Bytes::from(whole);
        taken
            .into_iter()
            .map(|(payload, origin)| RawRecord {
                payload: match payload {
                    Taken::Slice(from, to) => whole.slice(from..to),
                    Taken::Decoded(b) => b,
                },
                format: PayloadFormat::Json,
                fetched_at_ms,
                origin,
            })
            .collect()
    }
}

/// A batch's buffer, sized for `max` lines like the last batch's (a
/// quarter more), or what is left of the file after `offset` when that is
/// less.
fn batch_buffer(line_bytes: usize, max: usize, file: &std::fs::File, offset: u64) -> Vec<u8> {
    let left = file
        .metadata()
        .map_or(u64::MAX, |m| m.len().saturating_sub(offset));
    let want = max.saturating_mul(line_bytes + line_bytes / 4);
    Vec::with_capacity(
        want.min(usize::try_from(left).unwrap_or(usize::MAX))
            .min(1 << 30),
    )
}

/// Appends one line to `buf` (from `start`, where the line begins),
/// keeping at most `limit` bytes of it but consuming all of it, so an
/// oversized line cannot exhaust memory.
fn read_line_limited(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    start: usize,
    limit: usize,
) -> std::io::Result<LineRead> {
    let mut consumed = 0;
    let mut truncated = false;
    // Bytes of the line end (`\n` or `\r\n`).
    let mut ending = 0;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        let (chunk, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = (limit + 2).saturating_sub(buf.len() - start);
        if chunk.len() > room {
            truncated = true;
        }
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        if done {
            ending = 1 + usize::from(n >= 2 && chunk[n - 2] == b'\r');
        }
        reader.consume(n);
        consumed += n;
        if done {
            break;
        }
    }
    // A line is over the limit when its content (without the newline) is.
    let content_len = buf[start..]
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    if content_len > limit {
        truncated = true;
        buf.truncate(start + limit);
    }
    Ok(LineRead {
        consumed,
        truncated,
        content_len: consumed - ending.min(consumed),
    })
}

fn read_head(path: &Path, limit: usize) -> Bytes {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(limit as u64).read_to_end(&mut buf);
    }
    Bytes::from(buf)
}

/// `dir/name`, or `dir/name.1`, `dir/name.2`… if taken.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    (1..)
        .map(|i| dir.join(format!("{name}.{i}")))
        .find(|p| !p.exists())
        .expect("an unused name")
}

impl crate::Transport for FileDrop {
    const KIND: &'static str = "file_drop";
    const DRIVE: crate::Drive = crate::Drive::Polled;
    type Config = FileDropConfig;

    fn validate(config: &Self::Config) -> Result<(), String> {
        config.validate()
    }

    fn resolve_paths(config: &mut Self::Config, base: &std::path::Path) {
        if config.dir.is_relative() {
            config.dir = base.join(&config.dir);
        }
    }

    fn build(config: &Self::Config) -> Result<crate::BuiltSource, crate::SourceError> {
        use crate::BuiltSource;
        Ok(BuiltSource::Poll(Box::new(FileDrop::new(config.clone())?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, layout: FileLayout) -> FileDropConfig {
        FileDropConfig {
            dir: dir.to_path_buf(),
            layout,
            suffixes: vec![],
            record_element: Some("Case".into()),
            records_pointer: None,
            encoding: "utf-8".into(),
            settle: Duration::ZERO,
            max_record_bytes: 64,
            max_file_bytes: 1 << 20,
        }
    }

    async fn drain(src: &mut FileDrop) -> Vec<Batch> {
        let mut out = Vec::new();
        while let Some(b) = src.next_batch(2).await.unwrap() {
            src.committed(&b.cursor).await.unwrap();
            out.push(b);
        }
        out
    }

    #[tokio::test]
    async fn jsonl_resumes_from_committed_offset_and_moves_to_done() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.jsonl"),
            "{\"n\":1}\n{\"n\":2}\n\n{\"n\":3}\n",
        )
        .unwrap();
        let mut src = FileDrop::new(config(dir.path(), FileLayout::Jsonl)).unwrap();
        src.open(None).await.unwrap();
        let first = src.next_batch(1).await.unwrap().unwrap();
        assert_eq!(first.records[0].payload, "{\"n\":1}");
        // Crash: reopen at the first batch's cursor.
        let mut src = FileDrop::new(config(dir.path(), FileLayout::Jsonl)).unwrap();
        src.open(Some(first.cursor)).await.unwrap();
        let rest = drain(&mut src).await;
        let payloads: Vec<_> = rest
            .iter()
            .flat_map(|b| b.records.iter().map(|r| r.payload.clone()))
            .collect();
        assert_eq!(payloads, vec!["{\"n\":2}", "{\"n\":3}"]);
        assert_eq!(
            rest.last().unwrap().records.last().unwrap().origin,
            "a.jsonl:4"
        );
        assert!(dir.path().join("done/a.jsonl").exists());
        assert!(!dir.path().join("a.jsonl").exists());
    }

    #[tokio::test]
    async fn oversized_line_becomes_a_reject_without_losing_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let big = format!("{{\"x\":\"{}\"}}", "y".repeat(500));
        std::fs::write(dir.path().join("b.jsonl"), format!("{big}\n{{\"n\":2}}\n")).unwrap();
        let mut src = FileDrop::new(config(dir.path(), FileLayout::Jsonl)).unwrap();
        src.open(None).await.unwrap();
        let batches = drain(&mut src).await;
        let rejects: Vec<_> = batches.iter().flat_map(|b| b.rejects.clone()).collect();
        assert_eq!(rejects.len(), 1);
        assert!(rejects[0].truncated);
        assert_eq!(rejects[0].payload.len(), 64);
        assert_eq!(batches[0].records[0].payload, "{\"n\":2}");
    }

    /// A batch's records are slices of one buffer: each keeps exactly its
    /// line — the BOM, CR LF and blank lines taken off, a GB18030 line
    /// decoded to UTF-8, an unreadable line rejected whole — and the
    /// lines after a reject or a decoded line are not shifted.
    #[tokio::test]
    async fn a_batchs_records_are_exactly_their_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (gbk, _, _) = encoding_rs::GB18030.encode("{\"n\":\"宜昌\"}");
        let mut text = b"\xEF\xBB\xBF{\"n\":1}\r\n\r\n{\"n\":\"\xC3\xA9\"}\n".to_vec();
        text.extend_from_slice(&gbk);
        text.extend_from_slice(b"\n   \n{\"n\":4}\r\n");
        text.extend_from_slice(b"\xFE\x20\xFE\n{\"n\":5}");
        std::fs::write(dir.path().join("e.jsonl"), &text).unwrap();
        let mut config = config(dir.path(), FileLayout::Jsonl);
        config.encoding = "auto".into();
        let mut src = FileDrop::new(config).unwrap();
        src.open(None).await.unwrap();
        let batches = drain(&mut src).await;
        let records: Vec<(String, String)> = batches
            .iter()
            .flat_map(|b| b.records.iter())
            .map(|r| {
                (
                    String::from_utf8(r.payload.to_vec()).unwrap(),
                    r.origin.clone(),
                )
            })
            .collect();
        assert_eq!(
            records,
            vec![
                ("{\"n\":1}".into(), "e.jsonl:1".into()),
                ("{\"n\":\"é\"}".into(), "e.jsonl:3".into()),
                ("{\"n\":\"宜昌\"}".into(), "e.jsonl:4".into()),
                ("{\"n\":4}".into(), "e.jsonl:6".into()),
                ("{\"n\":5}".into(), "e.jsonl:8".into()),
            ]
        );
        let rejects: Vec<_> = batches.iter().flat_map(|b| b.rejects.iter()).collect();
        assert_eq!(rejects.len(), 1, "{rejects:?}");
        assert_eq!(&rejects[0].payload[..], b"\xFE\x20\xFE");
        assert_eq!(rejects[0].origin, "e.jsonl:7");
    }

    #[tokio::test]
    async fn malformed_xml_goes_to_rejected_with_reason_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c.xml"),
            "<Export><Case><No>1</No></Export>",
        )
        .unwrap();
        let mut src = FileDrop::new(config(dir.path(), FileLayout::Xml)).unwrap();
        src.open(None).await.unwrap();
        let batches = drain(&mut src).await;
        assert_eq!(batches.len(), 1);
        assert!(batches[0].rejects[0].reason.contains("malformed XML"));
        assert!(dir.path().join("rejected/c.xml").exists());
        let reason = std::fs::read_to_string(dir.path().join("rejected/c.xml.reason.txt")).unwrap();
        assert!(reason.contains("malformed XML"), "{reason}");
    }

    #[tokio::test]
    async fn partial_files_are_left_alone_until_renamed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("d.jsonl.part"), "{\"n\":1}\n").unwrap();
        let mut src = FileDrop::new(config(dir.path(), FileLayout::Jsonl)).unwrap();
        src.open(None).await.unwrap();
        assert!(src.next_batch(10).await.unwrap().is_none());
        std::fs::rename(dir.path().join("d.jsonl.part"), dir.path().join("d.jsonl")).unwrap();
        assert_eq!(drain(&mut src).await[0].records.len(), 1);
    }

    #[tokio::test]
    async fn gbk_xml_is_split_into_utf8_records() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, _, _) = encoding_rs::GB18030.encode(
            "<?xml version=\"1.0\" encoding=\"GBK\"?><Export><Case><Name>占道经营</Name></Case><Case><Name>工地扬尘</Name></Case></Export>",
        );
        std::fs::write(dir.path().join("e.xml"), &bytes).unwrap();
        let mut cfg = config(dir.path(), FileLayout::Xml);
        cfg.max_record_bytes = 1024;
        let mut src = FileDrop::new(cfg).unwrap();
        src.open(None).await.unwrap();
        let batches = drain(&mut src).await;
        let texts: Vec<_> = batches
            .iter()
            .flat_map(|b| b.records.iter())
            .map(|r| String::from_utf8(r.payload.to_vec()).unwrap())
            .collect();
        assert_eq!(
            texts,
            vec![
                "<Case><Name>占道经营</Name></Case>",
                "<Case><Name>工地扬尘</Name></Case>"
            ]
        );
        assert!(dir.path().join("done/e.xml").exists());
    }
}
