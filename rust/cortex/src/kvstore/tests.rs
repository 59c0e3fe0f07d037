//! The store's file checks (every case llama.cpp's test_slot_save.py covers, and ours), its index and its budget,
//! on files made here: no model needed.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::KvStore;
use super::format::{self, Expect, FIXED_HEAD, Reject};

const ID: [u8; 32] = [7; 32];
const VOCAB: i32 = 1000;

/// A fresh folder under the crate's temporary directory (TMPDIR, target/tmp in the scripts).
fn temp_root(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("rg-kvstore-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    root
}

fn expect(budget: u64) -> Expect {
    Expect { identity: ID, n_vocab: VOCAB, budget }
}

fn file_bytes(identity: &[u8; 32], tokens: &[i32], payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    format::write(&mut bytes, identity, tokens, payload).unwrap();
    bytes
}

fn tokens(n: i32) -> Vec<i32> {
    (0..n).map(|i| i * 7 % VOCAB).collect()
}

#[test]
fn a_written_file_verifies_and_gives_back_its_tokens_and_payload() {
    let bytes = file_bytes(&ID, &tokens(20), b"the state");
    assert_eq!(bytes.len() as u64, format::file_len(20, 9));
    let head = format::verify(&bytes, &expect(1 << 20)).unwrap();
    assert_eq!(head.tokens, tokens(20));
    assert_eq!(&bytes[head.payload], b"the state");
}

/// Every way a file can be bad, each refused with its own reason.
#[test]
fn every_corrupt_file_is_refused_with_its_reason() {
    let good = file_bytes(&ID, &tokens(20), &[42; 300]);
    let at_count = 8 + 4 + 32;
    let mut cases: Vec<(&str, Vec<u8>, Reject)> = Vec::new();
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    cases.push(("bad magic", bad_magic, Reject::BadMagic));
    cases.push((
        "truncated header",
        good[..FIXED_HEAD - 1].to_vec(),
        Reject::TruncatedHeader { len: FIXED_HEAD as u64 - 1 },
    ));
    cases.push(("empty file", Vec::new(), Reject::TruncatedHeader { len: 0 }));
    let cut = good.len() - 100;
    cases.push((
        "truncated payload",
        good[..cut].to_vec(),
        Reject::Truncated { expected: good.len() as u64, actual: cut as u64 },
    ));
    let mut longer = good.clone();
    longer.push(0);
    cases.push((
        "trailing bytes",
        longer,
        Reject::TrailingBytes { expected: good.len() as u64, actual: good.len() as u64 + 1 },
    ));
    let mut version = good.clone();
    version[8..12].copy_from_slice(&2u32.to_le_bytes());
    cases.push(("wrong version", version, Reject::WrongVersion(2)));
    cases.push(("wrong model", file_bytes(&[8; 32], &tokens(20), &[42; 300]), Reject::WrongModel));
    let mut count = good.clone();
    count[at_count..at_count + 4].copy_from_slice(&0u32.to_le_bytes());
    cases.push(("no tokens", count, Reject::BadTokenCount(0)));
    let mut huge = good.clone();
    huge[at_count..at_count + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(("absurd token count", huge, Reject::BadTokenCount(u32::MAX)));
    cases.push(("token outside the vocabulary", file_bytes(&ID, &[1, VOCAB, 2], b"x"), Reject::BadToken(VOCAB)));
    let mut flipped = good.clone();
    flipped[FIXED_HEAD + 80 + 10] ^= 1; // in the payload
    cases.push(("checksum mismatch (payload)", flipped, Reject::ChecksumMismatch));
    let mut flipped_token = good.clone();
    flipped_token[FIXED_HEAD] ^= 1; // the first token, still inside the vocabulary
    cases.push(("checksum mismatch (tokens)", flipped_token, Reject::ChecksumMismatch));
    let len = good.len() as u64;
    cases.push(("oversized", good.clone(), Reject::Oversized { size: len, budget: len - 1 }));
    for (what, bytes, reason) in cases {
        let budget = if what == "oversized" { len - 1 } else { 1 << 20 };
        assert_eq!(format::verify(&bytes, &expect(budget)).unwrap_err(), reason, "{what}");
    }
}

/// A store put beside files of every bad kind indexes only the good one and removes the others; a file whose payload
/// is corrupt passes the scan (only its head is read) and is removed when it is loaded.
#[test]
fn a_store_removes_bad_files_when_it_opens_or_loads_them() {
    let root = temp_root("bad");
    let dir = root.join(format::hex(&ID[..8]));
    fs::create_dir_all(&dir).unwrap();
    let good = file_bytes(&ID, &tokens(30), &[1; 64]);
    let write = |name: &str, bytes: &[u8]| fs::write(dir.join(name), bytes).unwrap();
    let name = |i: u8| format!("{}.kv", format::hex(&[i; 16]));
    write(&name(1), &good);
    write(&name(2), &good[..20]); // truncated header
    write(&name(3), &good[..good.len() - 5]); // truncated payload
    let mut version = good.clone();
    version[8] = 9;
    write(&name(4), &version);
    write(&name(5), &file_bytes(&[3; 32], &tokens(30), &[1; 64])); // another model
    write(&name(6), b"not a state file at all, just text long enough to hold a header of fifty-six bytes");
    write(&name(7), &file_bytes(&ID, &tokens(5000), &[1; 200_000])); // over the budget below
    let mut corrupt = file_bytes(&ID, &tokens(40), &[1; 64]);
    let n = corrupt.len();
    corrupt[n - 40] ^= 0xff; // the payload's last bytes: the head still reads
    write(&name(8), &corrupt);
    write("notes.txt", b"not ours"); // left alone
    let mut store = KvStore::open(&root, 100_000, ID, VOCAB).unwrap();
    assert_eq!(store.len(), 2, "the good file and the one corrupt only in its payload");
    for removed in [2, 3, 4, 5, 6, 7] {
        assert!(!dir.join(name(removed)).exists(), "file {removed} should be removed");
    }
    assert!(dir.join("notes.txt").exists());
    // The corrupt payload: the longest match, refused on load, removed, forgotten.
    let (index, shared) = store.best(&tokens(50), 4096).unwrap();
    assert_eq!(shared, 40);
    assert!(store.load(index).is_none());
    assert!(!dir.join(name(8)).exists());
    assert_eq!(store.len(), 1);
    let (index, shared) = store.best(&tokens(50), 4096).unwrap();
    assert_eq!(shared, 30);
    let restored = store.load(index).unwrap();
    assert_eq!(restored.tokens, tokens(30));
    assert_eq!(restored.payload(), &[1; 64]);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn saved_states_come_back_and_a_continued_conversation_supersedes_its_beginning() {
    let root = temp_root("save");
    let mut store = KvStore::open(&root, 1 << 20, ID, VOCAB).unwrap();
    store.save(&tokens(100), &[5; 1000]).unwrap();
    store.save(&[9, 9, 9], &[6; 10]).unwrap();
    // A new engine (an unload, a restart) finds both.
    let mut store = KvStore::open(&root, 1 << 20, ID, VOCAB).unwrap();
    assert_eq!(store.len(), 2);
    let (index, shared) = store.best(&tokens(120), 4096).unwrap();
    assert_eq!(shared, 100);
    assert_eq!(store.load(index).unwrap().payload(), &[5; 1000]);
    // Longer than the window: not offered.
    assert_eq!(store.best(&tokens(120), 99).map(|b| b.1), Some(0));
    // The conversation went on: its longer state replaces the shorter one.
    store.save(&tokens(150), &[7; 1500]).unwrap();
    assert_eq!(store.len(), 2);
    let files = fs::read_dir(store.dir()).unwrap().count();
    assert_eq!(files, 2, "the superseded file is removed and no temporary file is left");
    // Another model's store under the same root sees none of them.
    let other = KvStore::open(&root, 1 << 20, [1; 32], VOCAB).unwrap();
    assert!(other.is_empty());
    fs::remove_dir_all(&root).unwrap();
}

fn age(path: &Path, seconds: u64) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(seconds)).unwrap();
}

/// The budget spans every model's folder; the least recently used files go first, and a restore counts as a use.
#[test]
fn the_budget_evicts_the_least_recently_used_across_models() {
    let root = temp_root("lru");
    let one = format::file_len(10, 1000);
    let budget = 3 * one;
    let mut a = KvStore::open(&root, budget, ID, VOCAB).unwrap();
    let mut b = KvStore::open(&root, budget, [2; 32], VOCAB).unwrap();
    let conv = |i: i32| -> Vec<i32> { (0..10).map(|t| (t + 100 * i) % VOCAB).collect() };
    a.save(&conv(1), &[1; 1000]).unwrap();
    b.save(&conv(2), &[2; 1000]).unwrap();
    a.save(&conv(3), &[3; 1000]).unwrap();
    let path = |s: &KvStore, i: i32| s.dir().join(format::file_name(if i == 2 { &[2; 32] } else { &ID }, &conv(i)));
    age(&path(&a, 1), 30);
    age(&path(&b, 2), 20);
    age(&path(&a, 3), 10);
    // Conversation 1 is the oldest, but restoring it makes it the most recent.
    let (index, _) = a.best(&conv(1), 4096).unwrap();
    assert!(a.load(index).is_some());
    a.save(&conv(4), &[4; 1000]).unwrap();
    assert!(path(&a, 1).exists(), "restored, so recently used");
    assert!(!path(&b, 2).exists(), "the least recently used, in another model's folder");
    assert!(path(&a, 3).exists() && path(&a, 4).exists());
    // A state alone bigger than the budget is not written at all.
    a.save(&tokens(10), &vec![0; budget as usize]).unwrap();
    assert!(!a.dir().join(format::file_name(&ID, &tokens(10))).exists());
    // A smaller budget at the next open trims the root at once.
    let a = KvStore::open(&root, one, ID, VOCAB).unwrap();
    assert_eq!(a.len(), 1);
    assert!(path(&a, 4).exists(), "the most recent is the one kept");
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn file_names_come_from_hashes() {
    let name = format::file_name(&ID, &tokens(3));
    assert!(super::is_entry_name(&name), "{name}");
    assert_ne!(name, format::file_name(&ID, &tokens(4)));
    assert_ne!(name, format::file_name(&[1; 32], &tokens(3)));
    assert!(!super::is_entry_name("../x.kv") && !super::is_entry_name("notes.kv"));
}
