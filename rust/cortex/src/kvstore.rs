//! The KV-state store: conversations' caches kept on disk across an unload or a restart (issue 20).
//!
//! Rules:
//! - One folder per model identity ([`format::identity`]: the file, its cache settings and the llama.cpp state
//!   layout) under the store's root; one file per saved conversation, named by a hash of the identity and its
//!   tokens ([`format::file_name`]), never by request data.
//! - The byte budget spans the whole root (every model's folder): after each save, and when a store opens, the least
//!   recently used files go until the rest fit. "Used" is the file's modification time: a save writes it, a restore
//!   touches it, so other processes sharing the root see the same order.
//! - Writes are atomic (a temporary file in the same folder, then a rename); a reader never sees half a file.
//! - The store never fails its engine: a file that is corrupt, truncated, of another version, model or settings,
//!   bigger than the budget, or refused by llama.cpp is logged, removed and ignored; a folder that cannot be made or
//!   read leaves the engine without a store ([`KvStore::open`] returns the error for the caller to log).
//! - This module knows tokens as `i32` and states as bytes, nothing of llama.cpp (`seqstate` is the engine's side),
//!   so its tests run without a model. Layering: it references `format` and `gguf` only.

pub mod format;

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use format::{Expect, Reject};

/// A temporary file older than this is a crashed write's leftover, removed when a store opens.
const STALE_TEMP: Duration = Duration::from_secs(600);

/// One saved conversation, as the index knows it.
#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    tokens: Vec<i32>,
}

/// A model's view of the store: its folder, what it holds, and the budget of the whole root.
#[derive(Debug)]
pub struct KvStore {
    root: PathBuf,
    dir: PathBuf,
    expect: Expect,
    entries: Vec<Entry>,
}

/// A state read back from the store, checked.
#[derive(Debug)]
pub struct Restored {
    /// The tokens the state holds.
    pub tokens: Vec<i32>,
    bytes: Vec<u8>,
    payload: std::ops::Range<usize>,
    /// Which entry it came from (to [`KvStore::forget`] it when llama.cpp refuses it).
    pub index: usize,
}

impl Restored {
    /// llama.cpp's state of the sequence.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.payload.clone()]
    }
}

impl KvStore {
    /// Opens (creating it) the folder of `identity` under `root`, indexes the files there that pass their checks
    /// (removing those that do not), and trims the root to `budget` bytes.
    pub fn open(root: &Path, budget: u64, identity: [u8; 32], n_vocab: i32) -> io::Result<Self> {
        let dir = root.join(format::hex(&identity[..8]));
        fs::create_dir_all(&dir)?;
        let mut store =
            Self { root: root.to_path_buf(), dir, expect: Expect { identity, n_vocab, budget }, entries: Vec::new() };
        store.scan()?;
        store.evict();
        Ok(store)
    }

    /// The folder of this model's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many conversations it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn scan(&mut self) -> io::Result<()> {
        for item in fs::read_dir(&self.dir)? {
            let Ok(item) = item else { continue };
            let path = item.path();
            let name = item.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                let stale = item.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                if stale.is_some_and(|age| age > STALE_TEMP) {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            if !is_entry_name(&name) {
                continue; // Not ours: left alone.
            }
            match self.read_head(&path) {
                Ok(tokens) => self.entries.push(Entry { path, tokens }),
                Err(reject) => discard(&path, &reject),
            }
        }
        Ok(())
    }

    fn read_head(&self, path: &Path) -> Result<Vec<i32>, Reject> {
        let mut file = fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(format::read_head(&mut io::BufReader::new(&mut file), len, &self.expect)?.tokens)
    }

    /// The entry sharing the longest beginning with `prompt`, no longer than `window` tokens, and how many tokens
    /// they share (ties: the shorter entry, less to read).
    pub fn best(&self, prompt: &[i32], window: usize) -> Option<(usize, usize)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.tokens.len() <= window)
            .map(|(i, e)| (i, shared_prefix(&e.tokens, prompt), e.tokens.len()))
            .max_by_key(|&(_, shared, len)| (shared, std::cmp::Reverse(len)))
            .map(|(i, shared, _)| (i, shared))
    }

    /// Reads entry `index` whole and checks it (checksum included). A file that fails is logged, removed and
    /// forgotten (None); one that passes is marked as just used.
    pub fn load(&mut self, index: usize) -> Option<Restored> {
        let path = self.entries.get(index)?.path.clone();
        let checked = fs::read(&path).map_err(Reject::from).and_then(|bytes| {
            let head = format::verify(&bytes, &self.expect)?;
            Ok((head, bytes))
        });
        match checked {
            Ok((head, bytes)) => {
                touch(&path);
                Some(Restored { tokens: head.tokens, bytes, payload: head.payload, index })
            }
            Err(reject) => {
                discard(&path, &reject);
                self.entries.remove(index);
                None
            }
        }
    }

    /// Removes entry `index`: llama.cpp refused its state.
    pub fn forget(&mut self, index: usize) {
        if index < self.entries.len() {
            discard(&self.entries.remove(index).path, &Reject::Refused);
        }
    }

    /// Saves the state `payload` of a sequence holding `tokens`, unless it alone is over the budget. A saved
    /// conversation that `tokens` continues is superseded (removed); then the root is trimmed to the budget.
    pub fn save(&mut self, tokens: &[i32], payload: &[u8]) -> io::Result<()> {
        let size = format::file_len(tokens.len(), payload.len());
        if size > self.expect.budget || tokens.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(format::file_name(&self.expect.identity, tokens));
        if self.entries.iter().any(|e| e.path == path) && path.is_file() {
            // The same conversation, unchanged since it was saved (or restored): it is used again, not rewritten.
            touch(&path);
            return Ok(());
        }
        let temp = self.dir.join(temp_name());
        let written = fs::File::create(&temp).and_then(|file| {
            let mut w = BufWriter::with_capacity(1 << 20, file);
            format::write(&mut w, &self.expect.identity, tokens, payload)?;
            w.into_inner().map_err(io::IntoInnerError::into_error)?.flush()
        });
        if let Err(e) = written.and_then(|()| fs::rename(&temp, &path)) {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        // The kernel stamps writes with a coarse clock (a few ms behind); a restore's touch uses the precise one. One
        // clock for both keeps the order of uses true.
        touch(&path);
        self.entries.retain(|e| {
            let superseded = e.path != path && e.tokens.len() < tokens.len() && tokens.starts_with(&e.tokens);
            if superseded {
                let _ = fs::remove_file(&e.path);
            }
            !superseded && e.path != path
        });
        self.entries.push(Entry { path, tokens: tokens.to_vec() });
        self.evict();
        Ok(())
    }

    /// Removes the least recently used files of the whole root until the rest fit the budget.
    fn evict(&mut self) {
        let mut files = Vec::new();
        for folder in fs::read_dir(&self.root).into_iter().flatten().flatten() {
            for item in fs::read_dir(folder.path()).into_iter().flatten().flatten() {
                let name = item.file_name();
                if !is_entry_name(&name.to_string_lossy()) {
                    continue;
                }
                if let Ok(meta) = item.metadata() {
                    files.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len(), item.path()));
                }
            }
        }
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.expect.budget {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                log::debug!("KV store: evicted {} ({len} bytes) to stay within the budget", path.display());
            }
            total -= len;
            self.entries.retain(|e| e.path != path);
        }
    }
}

/// `<32 hex digits>.kv`, the only names the store reads or evicts.
fn is_entry_name(name: &str) -> bool {
    name.strip_suffix(".kv").is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A temporary name unique to this process and write.
fn temp_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(".{}-{}.tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn touch(path: &Path) {
    if let Ok(file) = fs::File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Logs why `path` is refused, and removes it.
fn discard(path: &Path, reject: &Reject) {
    log::warn!("KV store: removing {}: {reject}", path.display());
    let _ = fs::remove_file(path);
}

fn shared_prefix(a: &[i32], b: &[i32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests;
