//! The corrections users give ("wrong? it is a 7"), kept as a database keeps data: one SQLite
//! file in WAL mode with full sync, every insert committed before its id is returned, the
//! schema versioned (`PRAGMA user_version`) and migrated forward on open, and every record
//! checked on the way in and on the way out. Front ends (server, desktop app, CLI) write here;
//! fine-tuning reads [`Store::corrections`].

use digits_data::Digits;
use digits_model::recognize::{NumberReading, Reading};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Pixels of a normalised image (28x28, one byte each).
pub const NORMALIZED_LEN: usize = 784;
/// The largest original image kept with a correction.
pub const MAX_IMAGE_BYTES: usize = 8 << 20;
/// The longest model name accepted.
const MAX_MODEL_NAME: usize = 200;

/// Each step takes the schema from version `i` to `i + 1`; never edit one that has shipped,
/// add a step.
const MIGRATIONS: &[&str] = &["CREATE TABLE corrections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_ms INTEGER NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('web', 'desktop', 'api', 'import')),
        label INTEGER NOT NULL CHECK (label BETWEEN 0 AND 9),
        predicted INTEGER CHECK (predicted BETWEEN 0 AND 9),
        confidence REAL CHECK (confidence BETWEEN 0 AND 1),
        model TEXT NOT NULL,
        model_version INTEGER NOT NULL,
        position INTEGER,
        image BLOB,
        normalized BLOB NOT NULL CHECK (length(normalized) = 784)
    );
    CREATE INDEX corrections_label ON corrections (label);"];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: the database has schema version {found}, newer than this build reads ({SCHEMA_VERSION}); use a newer digits")]
    NewerSchema { path: PathBuf, found: u32 },
    #[error("{path}: record {id} is damaged: {problem}")]
    Damaged {
        path: PathBuf,
        id: i64,
        problem: String,
    },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = FeedbackError> = std::result::Result<T, E>;

/// Where a correction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Web,
    Desktop,
    Api,
    Import,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Web => "web",
            Source::Desktop => "desktop",
            Source::Api => "api",
            Source::Import => "import",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        [Source::Web, Source::Desktop, Source::Api, Source::Import]
            .into_iter()
            .find(|v| v.name() == s)
    }
}

/// A correction to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    pub source: Source,
    /// The digit the person says it is.
    pub label: u8,
    /// What the model read, and how sure it was (absent for imported images).
    pub predicted: Option<u8>,
    pub confidence: Option<f32>,
    pub model: String,
    pub model_version: u32,
    /// The digit's place in a number read left to right, for corrections of a whole number.
    pub position: Option<u32>,
    /// The image as it was sent (absent when only pixels were sent).
    pub image: Option<Vec<u8>>,
    /// What the model saw: 28x28 grey, white ink on black, row by row.
    pub normalized: Vec<u8>,
}

impl Correction {
    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(FeedbackError::Invalid(m));
        if self.label > 9 {
            return bad(format!("label {} is not a digit 0-9", self.label));
        }
        if let Some(p) = self.predicted.filter(|p| *p > 9) {
            return bad(format!("predicted digit {p} is not a digit 0-9"));
        }
        if let Some(c) = self
            .confidence
            .filter(|c| !(c.is_finite() && (0.0..=1.0).contains(c)))
        {
            return bad(format!("confidence {c} is not a number in 0..1"));
        }
        if self.normalized.len() != NORMALIZED_LEN {
            return bad(format!(
                "a normalised image has {NORMALIZED_LEN} pixels, this one {}",
                self.normalized.len()
            ));
        }
        if self
            .image
            .as_ref()
            .is_some_and(|i| i.len() > MAX_IMAGE_BYTES)
        {
            return bad(format!(
                "the image is over the {MAX_IMAGE_BYTES}-byte limit for a correction"
            ));
        }
        if self.model.is_empty() || self.model.len() > MAX_MODEL_NAME {
            return bad(format!("a model name has 1 to {MAX_MODEL_NAME} characters"));
        }
        Ok(())
    }
}

/// A stored correction.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    pub correction: Correction,
}

/// What a database holds, for `digits feedback stats` and the API.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub records: u64,
    pub by_label: [u64; 10],
    /// (source, count), in name order.
    pub by_source: Vec<(String, u64)>,
    /// (model, count), in name order.
    pub by_model: Vec<(String, u64)>,
    /// Records whose label differs from what the model read.
    pub misread: u64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
}

/// Identifies a database's corrections: a hash over every record's id, label and pixels in
/// id order, and how many there are. A fine-tuned model records it as its lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    pub sha256: String,
    pub records: u64,
}

/// An open feedback database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating it if need be) the database at `path` and migrates it to this build's
    /// schema.
    pub fn open(path: &Path) -> Result<Store> {
        let sql = |source| FeedbackError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                FeedbackError::Invalid(format!("{}: cannot create it: {e}", dir.display()))
            })?;
        }
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        // WAL: readers never block the writer; FULL: a commit is on disk before it returns,
        // so an acknowledged correction survives a crash or power loss.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        let found: u32 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        if found > SCHEMA_VERSION {
            return Err(FeedbackError::NewerSchema {
                path: path.to_path_buf(),
                found,
            });
        }
        for step in &MIGRATIONS[found as usize..] {
            tx.execute_batch(step).map_err(sql)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, source: rusqlite::Error) -> FeedbackError {
        FeedbackError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Stores one correction; returns its id once it is committed.
    pub fn insert(&mut self, c: &Correction) -> Result<i64> {
        Ok(self.insert_all(std::slice::from_ref(c))?[0])
    }

    /// Stores corrections in one transaction (all or none); returns their ids in order.
    pub fn insert_all(&mut self, all: &[Correction]) -> Result<Vec<i64>> {
        for c in all {
            c.check()?;
        }
        let now = now_ms();
        let path = &self.path;
        let sql = |source| FeedbackError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        let mut ids = Vec::with_capacity(all.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO corrections (created_ms, source, label, predicted, confidence,
                     model, model_version, position, image, normalized)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(sql)?;
            for c in all {
                stmt.execute(params![
                    now,
                    c.source.name(),
                    c.label,
                    c.predicted,
                    c.confidence,
                    c.model,
                    c.model_version,
                    c.position,
                    c.image,
                    c.normalized,
                ])
                .map_err(sql)?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit().map_err(sql)?;
        Ok(ids)
    }

    /// The record with `id`, if there is one.
    pub fn get(&self, id: i64) -> Result<Option<Record>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM corrections WHERE id = ?1"),
                [id],
                raw_record,
            )
            .optional()
            .map_err(|e| self.sql(e))?
            .map(|r| self.checked(r))
            .transpose()
    }

    /// Deletes the record with `id`; false when there was none.
    pub fn delete(&mut self, id: i64) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM corrections WHERE id = ?1", [id])
            .map_err(|e| self.sql(e))?;
        Ok(n == 1)
    }

    /// Every record, in id order, each checked.
    pub fn records(&self) -> Result<Vec<Record>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM corrections ORDER BY id"))
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], raw_record)
            .map_err(|e| self.sql(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql(e))?;
        rows.into_iter().map(|r| self.checked(r)).collect()
    }

    /// Every correction's normalised image and label, in id order: what fine-tuning learns
    /// from.
    pub fn training_digits(&self) -> Result<Digits> {
        let records = self.records()?;
        let labels = records.iter().map(|r| r.correction.label).collect();
        let images = records
            .into_iter()
            .flat_map(|r| r.correction.normalized)
            .collect();
        Ok(Digits::new(images, labels))
    }

    /// Ids of every record, in order.
    pub fn ids(&self) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM corrections ORDER BY id")
            .map_err(|e| self.sql(e))?;
        let ids = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| self.sql(e))?
            .collect::<Result<Vec<i64>, _>>()
            .map_err(|e| self.sql(e))?;
        Ok(ids)
    }

    /// Counts by label, source and model.
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        let grouped = |col: &str| -> Result<Vec<(String, u64)>> {
            let mut stmt = self
                .conn
                .prepare(&format!(
                    "SELECT CAST({col} AS TEXT), COUNT(*) FROM corrections GROUP BY {col} ORDER BY 1"
                ))
                .map_err(|e| self.sql(e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| self.sql(e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.sql(e))?;
            Ok(rows)
        };
        for (label, n) in grouped("label")? {
            if let Ok(d) = label.parse::<usize>() {
                if d < 10 {
                    s.by_label[d] = n;
                }
            }
        }
        s.by_source = grouped("source")?;
        s.by_model = grouped("model")?;
        s.records = s.by_label.iter().sum();
        (s.misread, s.first_ms, s.last_ms) = self
            .conn
            .query_row(
                "SELECT COUNT(CASE WHEN predicted IS NOT NULL AND predicted != label THEN 1 END),
                 MIN(created_ms), MAX(created_ms) FROM corrections",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| self.sql(e))?;
        Ok(s)
    }

    /// The corrections' fingerprint (see [`Fingerprint`]).
    pub fn fingerprint(&self) -> Result<Fingerprint> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, label, normalized FROM corrections ORDER BY id")
            .map_err(|e| self.sql(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.sql(e))?;
        let mut h = Sha256::new();
        let mut records = 0;
        while let Some(r) = rows.next().map_err(|e| self.sql(e))? {
            let (id, label, pixels): (i64, u8, Vec<u8>) = (
                r.get(0).map_err(|e| self.sql(e))?,
                r.get(1).map_err(|e| self.sql(e))?,
                r.get(2).map_err(|e| self.sql(e))?,
            );
            h.update(id.to_le_bytes());
            h.update([label]);
            h.update(&pixels);
            records += 1;
        }
        Ok(Fingerprint {
            sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
            records,
        })
    }

    /// SQLite's own check of the file; `Ok(())` when it says "ok".
    pub fn integrity_check(&self) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(|e| self.sql(e))?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.sql(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql(e))?;
        if lines == ["ok"] {
            Ok(())
        } else {
            Err(FeedbackError::Invalid(format!(
                "{}: integrity check failed: {}",
                self.path.display(),
                lines.join("; ")
            )))
        }
    }

    /// A record as read, checked as on the way in, so a file edited or damaged outside digits
    /// is reported, never trained on.
    fn checked(&self, r: RawRecord) -> Result<Record> {
        let damaged = |problem: String| FeedbackError::Damaged {
            path: self.path.clone(),
            id: r.id,
            problem,
        };
        let source = Source::parse(&r.source)
            .ok_or_else(|| damaged(format!("unknown source '{}'", r.source)))?;
        let digit = |v: i64, what: &str| {
            u8::try_from(v)
                .ok()
                .filter(|d| *d < 10)
                .ok_or_else(|| damaged(format!("{what} {v} is not a digit")))
        };
        let correction = Correction {
            source,
            label: digit(r.label, "label")?,
            predicted: r.predicted.map(|p| digit(p, "predicted")).transpose()?,
            confidence: r.confidence.map(|c| c as f32),
            model: r.model,
            model_version: u32::try_from(r.model_version)
                .map_err(|_| damaged(format!("model version {}", r.model_version)))?,
            position: r
                .position
                .map(|p| u32::try_from(p).map_err(|_| damaged(format!("position {p}"))))
                .transpose()?,
            image: r.image,
            normalized: r.normalized,
        };
        correction.check().map_err(|e| damaged(e.to_string()))?;
        Ok(Record {
            id: r.id,
            created_ms: r.created_ms,
            correction,
        })
    }
}

const COLUMNS: &str = "id, created_ms, source, label, predicted, confidence, model, \
                       model_version, position, image, normalized";

/// A row as SQLite returns it, before it is checked.
struct RawRecord {
    id: i64,
    created_ms: i64,
    source: String,
    label: i64,
    predicted: Option<i64>,
    confidence: Option<f64>,
    model: String,
    model_version: i64,
    position: Option<i64>,
    image: Option<Vec<u8>>,
    normalized: Vec<u8>,
}

fn raw_record(r: &rusqlite::Row) -> rusqlite::Result<RawRecord> {
    Ok(RawRecord {
        id: r.get(0)?,
        created_ms: r.get(1)?,
        source: r.get(2)?,
        label: r.get(3)?,
        predicted: r.get(4)?,
        confidence: r.get(5)?,
        model: r.get(6)?,
        model_version: r.get(7)?,
        position: r.get(8)?,
        image: r.get(9)?,
        normalized: r.get(10)?,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Who gives a correction, of which model's reading, and of what image.
#[derive(Debug, Clone)]
pub struct Origin {
    pub source: Source,
    pub model: String,
    pub model_version: u32,
    /// The image as it was sent, when it was an image.
    pub image: Option<Vec<u8>>,
}

/// The correction of one digit's reading: it is `label`.
pub fn digit_correction(reading: &Reading, label: u8, origin: Origin) -> Correction {
    Correction {
        source: origin.source,
        label,
        predicted: Some(reading.prediction.digit),
        confidence: Some(reading.prediction.confidence),
        model: origin.model,
        model_version: origin.model_version,
        position: None,
        image: origin.image,
        normalized: pixels_to_bytes(&reading.normalized.pixels),
    }
}

/// The corrections of a number's reading: it is `text`, one correction per digit, which needs
/// as many digits as the reader found (a number cut in the wrong places is corrected digit by
/// digit instead).
pub fn number_corrections(
    reading: &NumberReading,
    text: &str,
    origin: Origin,
) -> Result<Vec<Correction>> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FeedbackError::Invalid(format!(
            "'{text}' is not a number: give its digits, 0-9, and nothing else"
        )));
    }
    if text.len() != reading.digits.len() {
        return Err(FeedbackError::Invalid(format!(
            "the correction has {} digits but {} were found in the image; correct a number whose \
             digits were found, or draw each digit alone",
            text.len(),
            reading.digits.len()
        )));
    }
    Ok(reading
        .digits
        .iter()
        .zip(text.bytes())
        .enumerate()
        .map(|(i, (r, b))| Correction {
            position: Some(i as u32),
            ..digit_correction(r, b - b'0', origin.clone())
        })
        .collect())
}

/// Normalised pixels in 0..1 as the bytes a record keeps.
pub fn pixels_to_bytes(pixels: &[f32]) -> Vec<u8> {
    pixels
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn correction(label: u8) -> Correction {
        Correction {
            source: Source::Web,
            label,
            predicted: Some((label + 1) % 10),
            confidence: Some(0.9),
            model: "cnn".into(),
            model_version: 1,
            position: None,
            image: Some(vec![1, 2, 3]),
            normalized: vec![label * 20; NORMALIZED_LEN],
        }
    }

    #[test]
    fn records_come_back_as_stored_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/feedback.db");
        let ids = {
            let mut s = Store::open(&path).unwrap();
            vec![
                s.insert(&correction(7)).unwrap(),
                s.insert(&correction(3)).unwrap(),
            ]
        };
        let s = Store::open(&path).unwrap();
        let got = s.records().unwrap();
        assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
        assert_eq!(got[0].correction, correction(7));
        assert_eq!(s.get(ids[1]).unwrap().unwrap().correction, correction(3));
        assert!(s.get(999).unwrap().is_none());
        s.integrity_check().unwrap();
    }

    #[test]
    fn stats_count_by_label_source_and_model() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("f.db")).unwrap();
        let mut imported = correction(4);
        imported.source = Source::Import;
        imported.predicted = None;
        s.insert_all(&[correction(7), correction(7), imported])
            .unwrap();
        let st = s.stats().unwrap();
        assert_eq!(st.records, 3);
        assert_eq!(st.by_label[7], 2);
        assert_eq!(st.by_label[4], 1);
        assert_eq!(
            st.by_source,
            vec![("import".to_string(), 1), ("web".to_string(), 2)]
        );
        assert_eq!(st.misread, 2);
    }

    #[test]
    fn delete_removes_one_record_and_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("f.db")).unwrap();
        let empty = s.fingerprint().unwrap();
        let id = s.insert(&correction(1)).unwrap();
        let one = s.fingerprint().unwrap();
        assert_eq!(one.records, 1);
        assert_ne!(one.sha256, empty.sha256);
        assert!(s.delete(id).unwrap());
        assert!(!s.delete(id).unwrap());
        assert_eq!(s.fingerprint().unwrap(), empty);
    }

    #[test]
    fn bad_corrections_are_refused_and_nothing_of_a_batch_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("f.db")).unwrap();
        let mut bad = correction(2);
        bad.label = 10;
        let e = s.insert_all(&[correction(1), bad]).unwrap_err();
        assert!(e.to_string().contains("label 10"), "{e}");
        let mut short = correction(2);
        short.normalized.pop();
        assert!(s.insert(&short).unwrap_err().to_string().contains("784"));
        let mut nan = correction(2);
        nan.confidence = Some(f32::NAN);
        assert!(s.insert(&nan).is_err());
        assert_eq!(s.stats().unwrap().records, 0);
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.db");
        drop(Store::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let e = Store::open(&path).err().unwrap();
        assert!(e.to_string().contains("newer"), "{e}");
    }

    #[test]
    fn a_record_damaged_outside_digits_is_reported_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.db");
        let id = Store::open(&path).unwrap().insert(&correction(5)).unwrap();
        // Bypass the CHECK constraints the way a foreign tool could.
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "ignore_check_constraints", "ON")
            .unwrap();
        c.execute("UPDATE corrections SET source = 'mail' WHERE id = ?1", [id])
            .unwrap();
        drop(c);
        let e = Store::open(&path).unwrap().records().unwrap_err();
        assert!(e.to_string().contains("unknown source 'mail'"), "{e}");
    }

    #[test]
    fn an_unreadable_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.db");
        std::fs::write(&path, b"this is not a database, just some text").unwrap();
        let e = Store::open(&path).err().unwrap();
        assert!(e.to_string().contains("f.db"), "{e}");
    }
}
