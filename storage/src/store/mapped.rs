//! How full-text index files are read: through memory maps, as tantivy's `MmapDirectory` reads
//! them, but maps this module keeps track of. The pages a search reads through a map count in the
//! process's resident set until the kernel wants the memory back: after an hour of log searches
//! ~300 MiB of them sat beside the heap (soak P), past the store's 1 GiB. When the mapped pages
//! resident pass [`MAPPED_RESIDENT_BOUND`], [`Maps::trim`] tells the kernel the process no longer
//! needs the pages of its maps (`MADV_DONTNEED`): they stay in the page cache, and the next read of
//! one maps it again (a minor fault, no I/O).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, OwnedBytes, WatchCallback, WatchHandle, WritePtr,
};

/// Resident pages of file maps (index files, and the binary's own code) above which the index
/// maps are trimmed.
pub(crate) const MAPPED_RESIDENT_BOUND: u64 = 128 << 20;

/// One index file, mapped read-only.
struct Map(memmap2::Mmap);

/// Bytes of a map; the map lives as long as any of them.
struct MapBytes(Arc<Map>);

impl Deref for MapBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0 .0
    }
}

// SAFETY: the bytes are the map's, which stays at one address until its last `Arc` is dropped.
unsafe impl stable_deref_trait::StableDeref for MapBytes {}

/// The index files mapped now, by path (one map a file, shared by its readers).
#[derive(Default)]
pub(crate) struct Maps {
    live: Mutex<HashMap<PathBuf, Weak<Map>>>,
}

impl std::fmt::Debug for Maps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maps").finish_non_exhaustive()
    }
}

impl Maps {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Weak<Map>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bytes of the file at `path`, mapped (once while any reader holds them).
    fn open(&self, path: &Path) -> Result<OwnedBytes, OpenReadError> {
        let mut live = self.live();
        if let Some(map) = live.get(path).and_then(Weak::upgrade) {
            return Ok(OwnedBytes::new(MapBytes(map)));
        }
        let wrap = |e: io::Error| OpenReadError::wrap_io_error(e, path.to_path_buf());
        let file = File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => OpenReadError::FileDoesNotExist(path.to_path_buf()),
            _ => wrap(e),
        })?;
        if file.metadata().map_err(wrap)?.len() == 0 {
            return Ok(OwnedBytes::empty());
        }
        // SAFETY: index files are written once and not changed while they exist (tantivy's
        // directory contract); the map is read-only and shared.
        let map = Arc::new(Map(unsafe { memmap2::Mmap::map(&file) }.map_err(wrap)?));
        // Only maps still read stay listed.
        live.retain(|_, map| map.strong_count() > 0);
        live.insert(path.to_path_buf(), Arc::downgrade(&map));
        Ok(OwnedBytes::new(MapBytes(map)))
    }

    fn forget(&self, path: &Path) {
        self.live().remove(path);
    }

    /// Tells the kernel the process no longer needs the pages of any index map (see the module
    /// docs); the bytes of the maps.
    pub(crate) fn trim(&self) -> u64 {
        let maps: Vec<Arc<Map>> = self.live().values().filter_map(Weak::upgrade).collect();
        let mut bytes = 0;
        for map in &maps {
            // SAFETY: the map is a shared, read-only map of a file that does not change, alive
            // while `maps` holds it: dropping its pages loses nothing (a read maps the file's
            // bytes again from the page cache).
            if unsafe { map.0.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) }.is_ok() {
                bytes += map.0.len() as u64;
            }
        }
        bytes
    }

    /// [`Self::trim`] if the process's resident file-mapped pages exceed `bound` bytes; whether
    /// it trimmed.
    pub(crate) fn trim_if_over(&self, bound: u64) -> bool {
        let over = resident_mapped_bytes().is_some_and(|bytes| bytes > bound);
        if over {
            let bytes = self.trim();
            tracing::debug!(bytes, "index maps trimmed");
        }
        over
    }
}

/// The process's resident pages that are file maps (the `shared` of `/proc/self/statm`), in bytes.
pub(crate) fn resident_mapped_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(2)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// A tantivy directory that reads through [`Maps`] and does everything else as `MmapDirectory`.
#[derive(Clone, Debug)]
pub(crate) struct MappedDirectory {
    inner: MmapDirectory,
    root: PathBuf,
    maps: Arc<Maps>,
}

impl MappedDirectory {
    pub(crate) fn open(root: &Path, maps: Arc<Maps>) -> Result<MappedDirectory, tantivy::TantivyError> {
        Ok(MappedDirectory {
            inner: MmapDirectory::open(root).map_err(tantivy::TantivyError::from)?,
            root: root.to_path_buf(),
            maps,
        })
    }
}

impl Directory for MappedDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        Ok(Arc::new(self.maps.open(&self.root.join(path))?))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.maps.forget(&self.root.join(path));
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        self.inner.open_write(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.atomic_write(path, data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's resident pages of the file at `path` (from `/proc/self/smaps`), in kB.
    fn resident_kb(path: &Path) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        let mut kb = 0;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if first.contains('-') && !first.ends_with(':') {
                inside = line.ends_with(&*path.to_string_lossy());
            } else if inside && first == "Rss:" {
                kb += line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap();
            }
        }
        kb
    }

    #[test]
    fn trimmed_maps_leave_the_resident_set_and_read_the_same_bytes_again() {
        let dir = tempfile::tempdir().unwrap();
        let maps = Arc::new(Maps::default());
        let directory = MappedDirectory::open(dir.path(), maps.clone()).unwrap();
        let content: Vec<u8> = (0..8u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        directory.atomic_write(Path::new("a.idx"), &content).unwrap();
        directory.atomic_write(Path::new("empty.idx"), b"").unwrap();
        let path = dir.path().join("a.idx");

        let handle = directory.get_file_handle(Path::new("a.idx")).unwrap();
        let bytes = handle.read_bytes(0..content.len()).unwrap();
        assert_eq!(bytes.as_slice(), &content[..]);
        assert!(
            resident_kb(&path) >= 8 << 10,
            "read pages are resident: {} kB",
            resident_kb(&path)
        );
        // The same file is mapped once while read.
        let again = directory.get_file_handle(Path::new("a.idx")).unwrap();
        assert_eq!(
            again.read_bytes(0..16).unwrap().as_slice().as_ptr(),
            bytes.as_slice().as_ptr()
        );

        assert_eq!(maps.trim(), content.len() as u64);
        assert_eq!(resident_kb(&path), 0);
        assert_eq!(bytes.as_slice(), &content[..], "trimmed pages read the file again");
        assert!(directory
            .get_file_handle(Path::new("empty.idx"))
            .unwrap()
            .read_bytes(0..0)
            .unwrap()
            .is_empty());

        // Once no reader holds it, a map is unmapped and trimming skips it; a deleted file's is
        // forgotten.
        drop((handle, again, bytes));
        assert_eq!(maps.trim(), 0);
        assert_eq!(resident_kb(&path), 0);
        directory.delete(Path::new("a.idx")).unwrap();
        assert!(matches!(
            directory.get_file_handle(Path::new("a.idx")),
            Err(OpenReadError::FileDoesNotExist(_))
        ));
    }
}
