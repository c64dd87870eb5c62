//! What the fuzz targets share: the seed corpus, the number of cases, byte-level mutation of
//! seeds and the hang check. Each target includes this file (`#[path = "../../fuzz/mutate.rs"]`)
//! and adds mutations that know its format (TOML keys, JSON fields). See `fuzz/README.md`.
//!
//! An input is one of: random bytes; random tokens of the format (a dictionary, as libFuzzer
//! has); a seed from `fuzz/corpus/<target>/` as it is; or a seed with a few random edits (bit
//! flips, interesting bytes, insertions of bytes or tokens, deletions, duplications,
//! truncation, a piece of another seed). Inputs are bounded in size, so a target that finishes
//! at all finishes quickly; [`finishes`] fails a case that does not as a hang.

// Each target uses part of this file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;

/// The environment variable that sets the number of cases per target (the long run).
pub const CASES_VAR: &str = "PANTAU_FUZZ_CASES";

/// A case that takes longer than this is a hang. Far above what any bounded input needs (a few
/// milliseconds), so a loaded machine does not make it flaky.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Cases per target: `PANTAU_FUZZ_CASES`, else `default` (sized for `make test`).
pub fn cases(default: u32) -> u32 {
    std::env::var(CASES_VAR)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// proptest's settings for a target.
pub fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

/// `fuzz/corpus/<target>` of the repository.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Every seed of `target`, in file name order.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display())))
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Runs `f` on its own thread and returns its result; a panic in `f` is resumed here (so
/// proptest sees and shrinks it), and `f` running past [`DEADLINE`] fails as a hang.
pub fn finishes<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        // The receiver is gone only after a hang was already reported.
        let _ = tx.send(f());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends before it ends"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not finish within {DEADLINE:?}: a hang")
        }
    }
}

/// An input: bytes, shown as escaped ASCII (`{\n"id": \xff...`) when a case fails.
#[derive(Clone, PartialEq, Eq)]
pub struct Input(pub Vec<u8>);

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Input(b\"{}\")", self.0.escape_ascii())
    }
}

/// Bytes that often mean something to a parser.
#[rustfmt::skip]
const INTERESTING_BYTES: &[u8] = &[
    0, 0x7f, 0x80, 0xc3, 0xff, b'\n', b'\r', b'\t', b' ', b'"', b'\'', b'\\', b',', b'.', b'=',
    b'[', b']', b'{', b'}', b':', b'-', b'+', b'#', b'e', b'0', b'9',
];

/// One edit of an input.
#[derive(Debug, Clone)]
enum Edit {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    /// Repeats a piece `times` times (long runs, deep nesting).
    Duplicate(Index, usize, usize),
    Truncate(Index),
    /// Puts a piece of another seed at a position.
    Splice(Index, Index, Index, usize),
}

fn edit(dict: &'static [&'static str]) -> BoxedStrategy<Edit> {
    let insertion = prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..8),
        proptest::sample::select(INTERESTING_BYTES).prop_map(|b| vec![b]),
        proptest::sample::select(dict).prop_map(|t| t.as_bytes().to_vec()),
    ];
    prop_oneof![
        1 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Edit::FlipBit(at, bit)),
        1 => (any::<Index>(), proptest::sample::select(INTERESTING_BYTES))
            .prop_map(|(at, b)| Edit::SetByte(at, b)),
        3 => (any::<Index>(), insertion).prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        2 => (any::<Index>(), 1usize..16).prop_map(|(at, n)| Edit::Delete(at, n)),
        1 => (any::<Index>(), 1usize..32, 1usize..64)
            .prop_map(|(at, n, times)| Edit::Duplicate(at, n, times)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), any::<Index>(), any::<Index>(), 1usize..64)
            .prop_map(|(at, seed, from, n)| Edit::Splice(at, seed, from, n)),
    ]
    .boxed()
}

fn apply(input: &mut Vec<u8>, edit: &Edit, seeds: &[Vec<u8>]) {
    let len = input.len();
    // A position to insert at (0..=len) and one of an existing byte (0..len).
    let gap = |at: &Index| at.index(len + 1);
    match edit {
        Edit::Insert(at, bytes) => {
            let at = gap(at);
            input.splice(at..at, bytes.iter().copied());
        }
        Edit::Splice(at, seed, from, n) => {
            let other = &seeds[seed.index(seeds.len())];
            if !other.is_empty() {
                let from = from.index(other.len());
                let piece = &other[from..(from + n).min(other.len())];
                let at = gap(at);
                input.splice(at..at, piece.iter().copied());
            }
        }
        _ if len == 0 => {}
        Edit::FlipBit(at, bit) => input[at.index(len)] ^= 1 << bit,
        Edit::SetByte(at, b) => input[at.index(len)] = *b,
        Edit::Delete(at, n) => {
            let at = at.index(len);
            input.drain(at..(at + n).min(len));
        }
        Edit::Duplicate(at, n, times) => {
            let at = at.index(len);
            let piece = input[at..(at + n).min(len)].to_vec();
            for _ in 0..*times {
                input.splice(at..at, piece.iter().copied());
            }
        }
        Edit::Truncate(at) => input.truncate(at.index(len)),
    }
}

/// Seeds with 1 to 8 random edits each, at most `max_len` bytes.
pub fn mutated(
    seeds: Arc<Vec<Vec<u8>>>,
    dict: &'static [&'static str],
    max_len: usize,
) -> BoxedStrategy<Vec<u8>> {
    (any::<Index>(), proptest::collection::vec(edit(dict), 1..8))
        .prop_map(move |(seed, edits)| {
            let mut input = seeds[seed.index(seeds.len())].clone();
            for e in &edits {
                apply(&mut input, e, &seeds);
                input.truncate(max_len);
            }
            input
        })
        .boxed()
}

/// Random bytes, random tokens of `dict`, seeds as they are and (mostly) mutated seeds, each at
/// most `max_len` bytes.
pub fn input(
    seeds: Vec<Vec<u8>>,
    dict: &'static [&'static str],
    max_len: usize,
) -> BoxedStrategy<Input> {
    let seeds = Arc::new(seeds);
    let as_is = seeds.clone();
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..max_len.min(512)),
        1 => proptest::collection::vec(proptest::sample::select(dict), 0..64)
            .prop_map(|tokens| tokens.concat().into_bytes()),
        1 => any::<Index>().prop_map(move |i| as_is[i.index(as_is.len())].clone()),
        6 => mutated(seeds, dict, max_len),
    ]
    .prop_map(move |mut v| {
        v.truncate(max_len);
        Input(v)
    })
    .boxed()
}
