//! Primaries' images on disk, so that a dead primary can be created again without
//! keeping every image in memory (issue 18: 100 primaries of 4 MiB took 480 MiB).
//! One file per content digest (`<dir>/<sha-256 hex>`), written atomically, read
//! back and checked only when a re-create or a clone needs it, and removed when no
//! primary claims it any more.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::file::{StateError, write_atomic};
use crate::name::Name;

/// Why an image could not be stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "image {digest}: not in the store ({dir}); it is fetched again from a unikernel that runs it"
    )]
    Missing { dir: PathBuf, digest: String },
    #[error(
        "image {digest}: the stored file {path} is corrupt (its SHA-256 is {found}); removed, it is fetched again from a unikernel that runs it"
    )]
    Corrupt {
        path: PathBuf,
        digest: String,
        found: String,
    },
}

/// The store of one daemon (`images/` next to its state file).
pub struct ImageStore {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// One writer at a time: two fetches of one digest share a temporary name.
    writing: Mutex<()>,
}

#[derive(Default)]
struct Inner {
    /// Primary → the content digest (hex) of its image: one copy per digest
    /// (the key in `refs`), not one per primary.
    claims: HashMap<Name, Arc<str>>,
    /// Content digest → primaries claiming it.
    refs: HashMap<Arc<str>, usize>,
    /// Files present (as far as this process knows).
    stored: HashSet<String>,
    /// albatross' reported digest → content digest, when they differ.
    alias: HashMap<String, String>,
    /// Fetches under way, by reported digest (or primary when none is reported),
    /// and the primaries that claim the image once it is stored.
    fetching: HashMap<String, Vec<Name>>,
}

/// SHA-256 of `bytes` in lower-case hex.
pub fn digest_hex(bytes: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn is_digest_name(n: &str) -> bool {
    n.len() == 64
        && n.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl ImageStore {
    /// The store for `state_file`: `images/` in its directory.
    pub fn dir_for(state_file: &Path) -> PathBuf {
        state_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("images")
    }

    /// Open (and create) the store in `dir`; files already there count as stored
    /// (a restart does not fetch them again), temporary leftovers are removed.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let io = |source| StateError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut inner = Inner::default();
        for e in std::fs::read_dir(dir).map_err(io)? {
            let Ok(e) = e else { continue };
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if is_digest_name(name) {
                inner.stored.insert(name.to_string());
            } else if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            inner: Mutex::new(inner),
            writing: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest)
    }

    /// The content digest of a stored image albatross reports as `reported`
    /// (hex; empty: albatross did not say).
    pub fn stored_as(&self, reported: &str) -> Option<String> {
        if reported.is_empty() {
            return None;
        }
        let i = self.lock();
        let d = i.alias.get(reported).map_or(reported, String::as_str);
        i.stored.contains(d).then(|| d.to_string())
    }

    /// The content digest `primary` claims, if any.
    pub fn claim_of(&self, primary: &Name) -> Option<String> {
        self.lock().claims.get(primary).map(|d| d.to_string())
    }

    /// `primary` runs the image of content digest `digest` (stored): keep it while
    /// it does; an image it ran before is removed if no other primary claims it.
    pub fn claim(&self, primary: &Name, digest: &str) {
        let mut i = self.lock();
        if i.claims.get(primary).is_some_and(|d| **d == *digest) {
            return;
        }
        let shared = match i.refs.get_key_value(digest) {
            Some((d, _)) => d.clone(),
            None => Arc::from(digest),
        };
        *i.refs.entry(shared.clone()).or_default() += 1;
        if let Some(old) = i.claims.insert(primary.clone(), shared) {
            self.unref(&mut i, &old);
        }
    }

    /// Forget every primary `keep` says no to (removed from the configuration).
    pub fn retain(&self, keep: impl Fn(&Name) -> bool) {
        let mut i = self.lock();
        let gone: Vec<Name> = i.claims.keys().filter(|n| !keep(n)).cloned().collect();
        for n in gone {
            if let Some(d) = i.claims.remove(&n) {
                self.unref(&mut i, &d);
            }
        }
    }

    fn unref(&self, i: &mut Inner, digest: &str) {
        let left = i.refs.get_mut(digest).map_or(0, |n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left == 0 {
            i.refs.remove(digest);
            i.stored.remove(digest);
            i.alias.retain(|_, d| d != digest);
            if let Err(e) = std::fs::remove_file(self.path(digest))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(digest, error = %e, "cannot remove an image no primary needs");
            }
        }
    }

    /// Remove the files no primary claims (left by an earlier run).
    pub fn sweep(&self) {
        let mut i = self.lock();
        let unclaimed: Vec<String> = i
            .stored
            .iter()
            .filter(|d| !i.refs.contains_key(d.as_str()))
            .cloned()
            .collect();
        for d in unclaimed {
            i.stored.remove(&d);
            let _ = std::fs::remove_file(self.path(&d));
        }
    }

    /// Store `image` (albatross reported it as `reported`, hex, maybe empty) and
    /// return its content digest; one file per digest.
    pub fn put(&self, reported: &str, image: &[u8]) -> Result<String, StateError> {
        let digest = digest_hex(image);
        let _w = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        if !self.lock().stored.contains(&digest) {
            write_atomic(&self.path(&digest), image)?;
        }
        let mut i = self.lock();
        i.stored.insert(digest.clone());
        if !reported.is_empty() && reported != digest {
            i.alias.insert(reported.to_string(), digest.clone());
        }
        Ok(digest)
    }

    /// Read the image of content digest `digest`, checked. A missing or corrupt
    /// file is forgotten (and removed), so that the next reconcile fetches it again.
    pub fn load(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.path(digest);
        let forget = || {
            let mut i = self.lock();
            i.stored.remove(digest);
            i.alias.retain(|_, d| d != digest);
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                forget();
                return Err(ImageError::Missing {
                    dir: self.dir.clone(),
                    digest: digest.to_string(),
                });
            }
            Err(source) => return Err(StateError::Io { path, source }.into()),
        };
        let found = digest_hex(&bytes);
        if found != digest {
            forget();
            let _ = std::fs::remove_file(&path);
            return Err(ImageError::Corrupt {
                path,
                digest: digest.to_string(),
                found,
            });
        }
        Ok(bytes)
    }

    /// Start fetching the image known as `key` (a reported digest, or a primary's
    /// name when none is reported) for `primaries`; `false` if a fetch of it is
    /// already under way (`primaries` then claim what that fetch stores).
    pub fn begin_fetch(&self, key: &str, primaries: &[Name]) -> bool {
        let mut i = self.lock();
        match i.fetching.get_mut(key) {
            Some(waiting) => {
                waiting.extend_from_slice(primaries);
                false
            }
            None => {
                i.fetching.insert(key.to_string(), primaries.to_vec());
                true
            }
        }
    }

    /// The fetch of `key` ended: store `image` (if it was got) and let every primary
    /// waiting for it claim it. Stored and claimed under one lock, so a sweep never
    /// sees the file unclaimed.
    pub fn end_fetch(
        &self,
        key: &str,
        reported: &str,
        image: Option<&[u8]>,
    ) -> Result<Option<String>, StateError> {
        let stored = image.map(|b| self.put_unclaimed(reported, b)).transpose();
        let mut i = self.lock();
        let waiting = i.fetching.remove(key).unwrap_or_default();
        let digest = stored?;
        if let Some(d) = &digest {
            i.stored.insert(d.clone());
            if !reported.is_empty() && reported != d {
                i.alias.insert(reported.to_string(), d.clone());
            }
            drop(i);
            for p in &waiting {
                self.claim(p, d);
            }
        }
        Ok(digest)
    }

    /// Write `image` without marking it stored (the caller does, under its lock).
    fn put_unclaimed(&self, _reported: &str, image: &[u8]) -> Result<String, StateError> {
        let digest = digest_hex(image);
        let _w = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        if !self.lock().stored.contains(&digest) {
            write_atomic(&self.path(&digest), image)?;
        }
        Ok(digest)
    }

    /// How many image files the store holds (tests, metrics).
    pub fn files(&self) -> usize {
        std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_str().is_some_and(is_digest_name))
                    .count()
            })
            .unwrap_or(0)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(test: &str) -> ImageStore {
        let dir = std::env::temp_dir().join(format!("aa-images-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ImageStore::open(&dir).unwrap()
    }

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn one_file_per_digest_removed_when_no_primary_claims_it() {
        let s = store("dedup");
        let a = s.put("", b"image one").unwrap();
        let b = s.put("", b"image one").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, digest_hex(b"image one"));
        s.claim(&name("alice:a"), &a);
        s.claim(&name("alice:b"), &b);
        assert_eq!(s.files(), 1, "one copy per digest");
        assert_eq!(s.stored_as(&a).as_deref(), Some(a.as_str()));

        // a moves to a new image: the old one stays for b.
        let c = s.put("", b"image two").unwrap();
        s.claim(&name("alice:a"), &c);
        assert_eq!(s.files(), 2);
        // b is removed from the configuration: its image goes.
        s.retain(|n| *n != name("alice:b"));
        assert_eq!(s.files(), 1);
        assert_eq!(s.stored_as(&a), None);
        assert_eq!(s.load(&c).unwrap(), b"image two");
        s.retain(|_| false);
        assert_eq!(s.files(), 0);
    }

    #[test]
    fn a_reported_digest_that_differs_from_the_content_is_an_alias() {
        let s = store("alias");
        let d = s.put("abcd", b"zzz").unwrap();
        assert_eq!(s.stored_as("abcd").as_deref(), Some(d.as_str()));
        assert_eq!(s.stored_as(""), None);
    }

    #[test]
    fn a_corrupt_or_missing_file_is_a_clear_error_and_forgotten() {
        let s = store("corrupt");
        let d = s.put("", b"the image").unwrap();
        s.claim(&name("alice:a"), &d);
        std::fs::write(s.dir().join(&d), b"the imagE").unwrap();
        let e = s.load(&d).unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains(&d), "{e}");
        assert_eq!(s.stored_as(&d), None, "fetched again, not trusted");
        assert_eq!(s.files(), 0, "the corrupt file is removed");
        let e = s.load(&d).unwrap_err().to_string();
        assert!(e.contains("not in the store"), "{e}");
        // Stored again, it loads.
        assert_eq!(s.put(&d, b"the image").unwrap(), d);
        assert_eq!(s.load(&d).unwrap(), b"the image");
    }

    #[test]
    fn a_restart_finds_the_files_and_sweeps_unclaimed_ones() {
        let s = store("restart");
        let a = s.put("", b"kept").unwrap();
        let b = s.put("", b"stale").unwrap();
        std::fs::write(s.dir().join(".x.tmp"), b"half").unwrap();
        let s = ImageStore::open(s.dir()).unwrap();
        assert_eq!(s.stored_as(&a).as_deref(), Some(a.as_str()));
        assert!(!s.dir().join(".x.tmp").exists());
        s.claim(&name("alice:a"), &a);
        s.sweep();
        assert_eq!(s.stored_as(&b), None);
        assert_eq!(s.files(), 1);
    }

    #[test]
    fn one_fetch_per_key_and_every_waiting_primary_claims_it() {
        let s = store("fetch");
        assert!(s.begin_fetch("d1", &[name("alice:a")]));
        assert!(!s.begin_fetch("d1", &[name("alice:b")]));
        assert!(s.begin_fetch("d2", &[name("alice:c")]));
        let d = s.end_fetch("d1", "d1", Some(b"shared")).unwrap().unwrap();
        assert_eq!(s.claim_of(&name("alice:a")).as_deref(), Some(d.as_str()));
        assert_eq!(s.claim_of(&name("alice:b")).as_deref(), Some(d.as_str()));
        assert_eq!(s.stored_as("d1").as_deref(), Some(d.as_str()));
        // A failed fetch claims nothing and may be tried again.
        assert_eq!(s.end_fetch("d2", "d2", None).unwrap(), None);
        assert_eq!(s.claim_of(&name("alice:c")), None);
        assert!(s.begin_fetch("d2", &[name("alice:c")]));
        assert_eq!(s.files(), 1);
    }
}
