//! The unit's model store (`model.store`, `/var/lib/agecam/models`): the model sets installed
//! in the field by `agecam models install`, beside the set the package installed.
//!
//! ```text
//! store/sets/<id>/     one verified set each (id: the start of its manifest's sha256)
//! store/current  -> sets/<id>    what the daemon loads (when present; else model.dir)
//! store/previous -> sets/<id>    what `agecam models rollback` goes back to
//! ```
//!
//! An install checks the bundle (signature, hashes, canonical form) in memory, unpacks it into
//! `sets/.incoming-<id>`, checks it again from disk and runs the selftest on it, renames it to
//! `sets/<id>`, then points `previous` at the old set and `current` at the new one, each link
//! replaced by a rename. A rename is atomic, so a kill at any step leaves `current` on the old
//! set or on the new one, each whole, never a mix; the next install clears what a killed one
//! left behind. The running daemon is not touched: it loads the new set when restarted.

use super::bundle::{self, Bundle};
use super::manifest::{Manifest, MANIFEST_FILE};
use super::signature::TrustedKeys;
use crate::Error;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The steps of an install, in order, after each of which a test can stop it as a kill would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The files are written (and synced) into `sets/.incoming-<id>`.
    Unpacked,
    /// They verified again from disk and the selftest passed on them.
    Checked,
    /// The folder is renamed to `sets/<id>`.
    Committed,
    /// `previous` points at the set that was current.
    PreviousLinked,
    /// `current` points at the new set.
    Switched,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::Unpacked,
        Step::Checked,
        Step::Committed,
        Step::PreviousLinked,
        Step::Switched,
    ];
}

/// What an install or a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// The set now current.
    pub current: String,
    /// The set `previous` points at, if any.
    pub previous: Option<String>,
    /// The key that signed the current set, described.
    pub signed_by: String,
    /// The selftest's lines on the new set (empty for a rollback or a set already current).
    pub checks: Vec<String>,
    /// False when the bundle's set was already current (nothing changed).
    pub changed: bool,
}

/// A model store folder.
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
}

const CURRENT: &str = "current";
const PREVIOUS: &str = "previous";
const SETS: &str = "sets";
const INCOMING: &str = ".incoming-";

impl ModelStore {
    pub fn new(root: &Path) -> ModelStore {
        ModelStore {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of the current set, when one is installed.
    pub fn current(&self) -> Option<PathBuf> {
        self.linked(CURRENT).map(|id| self.set_dir(&id))
    }

    /// The set id a link (`current`, `previous`) points at, if it exists and points at a set.
    fn linked(&self, link: &str) -> Option<String> {
        let target = std::fs::read_link(self.root.join(link)).ok()?;
        let id = target.strip_prefix(SETS).ok()?.to_str()?.to_string();
        self.set_dir(&id)
            .join(MANIFEST_FILE)
            .is_file()
            .then_some(id)
    }

    /// The ids `current` and `previous` point at.
    pub fn status(&self) -> (Option<String>, Option<String>) {
        (self.linked(CURRENT), self.linked(PREVIOUS))
    }

    fn set_dir(&self, id: &str) -> PathBuf {
        self.root.join(SETS).join(id)
    }

    /// Installs the bundle file `bundle_file` as the current set. `selftest` runs on the
    /// unpacked set's folder before the switch (its lines, or why it failed). `stop_after`
    /// is for fault-injection tests: when it returns true the install stops there, as if
    /// killed, leaving its files behind.
    pub fn install(
        &self,
        bundle_file: &Path,
        keys: &TrustedKeys,
        selftest: &mut dyn FnMut(&Path) -> Result<Vec<String>, String>,
        stop_after: &mut dyn FnMut(Step) -> bool,
    ) -> Result<Switch, Error> {
        let bytes = std::fs::read(bundle_file).map_err(|e| Error::Model {
            file: bundle_file.to_path_buf(),
            problem: format!("cannot read the model bundle ({e})"),
        })?;
        let bundle = bundle::read(&bytes, bundle_file, keys)?;
        drop(bytes);
        let _lock = self.lock()?;
        self.clear_leftovers()?;
        let id = bundle.id();
        let (current, previous) = self.status();
        if current.as_deref() == Some(id.as_str()) {
            return Ok(Switch {
                current: id,
                previous,
                signed_by: bundle.signed_by,
                checks: Vec::new(),
                changed: false,
            });
        }
        let sets = self.root.join(SETS);
        let incoming = sets.join(format!("{INCOMING}{id}"));
        self.unpack(&bundle, &incoming)?;
        if stop_after(Step::Unpacked) {
            return Err(interrupted(Step::Unpacked));
        }
        // From disk again: what the daemon will read is what was checked.
        let manifest = Manifest::load(&incoming, keys)?;
        manifest.verify_all()?;
        let checks = selftest(&incoming).map_err(|problem| Error::Model {
            file: bundle_file.to_path_buf(),
            problem: format!("the selftest failed on this model set ({problem}); not installed, the unit keeps its current models"),
        })?;
        if stop_after(Step::Checked) {
            return Err(interrupted(Step::Checked));
        }
        let final_dir = self.set_dir(&id);
        if final_dir.exists() {
            // The same set installed before (now `previous`, or left by a killed install).
            std::fs::remove_dir_all(&final_dir).map_err(|e| self.io(&final_dir, e))?;
        }
        std::fs::rename(&incoming, &final_dir).map_err(|e| self.io(&final_dir, e))?;
        sync_dir(&sets).map_err(|e| self.io(&sets, e))?;
        if stop_after(Step::Committed) {
            return Err(interrupted(Step::Committed));
        }
        if let Some(old) = &current {
            self.relink(PREVIOUS, old)?;
        }
        if stop_after(Step::PreviousLinked) {
            return Err(interrupted(Step::PreviousLinked));
        }
        self.relink(CURRENT, &id)?;
        if stop_after(Step::Switched) {
            return Err(interrupted(Step::Switched));
        }
        let previous = current.or(previous);
        self.prune(&[Some(id.as_str()), previous.as_deref()])?;
        Ok(Switch {
            current: id,
            previous,
            signed_by: manifest.signed_by,
            checks,
            changed: true,
        })
    }

    /// Makes the previous set current again (and the current one previous), after checking
    /// the previous set's signature and every file's hash.
    pub fn rollback(&self, keys: &TrustedKeys) -> Result<Switch, Error> {
        let _lock = self.lock()?;
        let (current, previous) = self.status();
        let Some(previous) = previous else {
            return Err(Error::Model {
                file: self.root.join(PREVIOUS),
                problem: "no previous model set to roll back to (agecam models status lists what is installed)".into(),
            });
        };
        let manifest = Manifest::load(&self.set_dir(&previous), keys)?;
        manifest.verify_all()?;
        self.relink(CURRENT, &previous)?;
        if let Some(old) = &current {
            self.relink(PREVIOUS, old)?;
        }
        Ok(Switch {
            current: previous,
            previous: current,
            signed_by: manifest.signed_by,
            checks: Vec::new(),
            changed: true,
        })
    }

    /// Writes every file of `bundle` into `dir` (made anew) and syncs them.
    fn unpack(&self, bundle: &Bundle, dir: &Path) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
        for (name, bytes) in bundle.all_files() {
            let path = dir.join(name);
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut file = std::fs::File::create(&path)?;
                file.write_all(bytes)?;
                file.sync_all()
            };
            write().map_err(|e| self.io(&path, e))?;
        }
        sync_dir(dir).map_err(|e| self.io(dir, e))
    }

    /// Points `link` at `sets/<id>` by renaming a new link over it.
    fn relink(&self, link: &str, id: &str) -> Result<(), Error> {
        let path = self.root.join(link);
        let new = self.root.join(format!("{link}.new"));
        let _ = std::fs::remove_file(&new);
        std::os::unix::fs::symlink(Path::new(SETS).join(id), &new)
            .and_then(|()| std::fs::rename(&new, &path))
            .and_then(|()| sync_dir(&self.root))
            .map_err(|e| self.io(&path, e))
    }

    /// Removes what a killed install left: `sets/.incoming-*` and `*.new` links.
    fn clear_leftovers(&self) -> Result<(), Error> {
        let sets = self.root.join(SETS);
        std::fs::create_dir_all(&sets).map_err(|e| self.io(&sets, e))?;
        for entry in std::fs::read_dir(&sets)
            .map_err(|e| self.io(&sets, e))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(INCOMING) {
                std::fs::remove_dir_all(entry.path()).map_err(|e| self.io(&entry.path(), e))?;
            }
        }
        for link in [CURRENT, PREVIOUS] {
            let _ = std::fs::remove_file(self.root.join(format!("{link}.new")));
        }
        Ok(())
    }

    /// Removes every set but those kept.
    fn prune(&self, keep: &[Option<&str>]) -> Result<(), Error> {
        let sets = self.root.join(SETS);
        for entry in std::fs::read_dir(&sets)
            .map_err(|e| self.io(&sets, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&Some(name.as_str())) {
                std::fs::remove_dir_all(entry.path()).map_err(|e| self.io(&entry.path(), e))?;
            }
        }
        Ok(())
    }

    /// An exclusive lock on the store, so two installs never interleave.
    fn lock(&self) -> Result<std::fs::File, Error> {
        std::fs::create_dir_all(&self.root).map_err(|e| self.io(&self.root, e))?;
        let path = self.root.join(".lock");
        let file = std::fs::File::create(&path).map_err(|e| self.io(&path, e))?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::Model {
                file: path,
                problem: "another agecam models install or rollback is running on this store; wait for it to finish".into(),
            });
        }
        Ok(file)
    }

    fn io(&self, path: &Path, e: std::io::Error) -> Error {
        Error::Model {
            file: path.to_path_buf(),
            problem: format!(
                "cannot change the model store ({e}); run as a user who can write {} (e.g. with sudo); the unit keeps its current models",
                self.root.display()
            ),
        }
    }
}

fn interrupted(step: Step) -> Error {
    Error::Model {
        file: PathBuf::from("(test)"),
        problem: format!("install stopped after {step:?}"),
    }
}

/// fsync of a folder, so the renames in it survive a power cut.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bundle::tests::small_set;

    /// A bundle of a small signed set; returns its path and set id.
    fn bundle(dir: &Path, tag: &str) -> (PathBuf, String, TrustedKeys) {
        let set = dir.join(format!("set-{tag}"));
        std::fs::create_dir_all(&set).unwrap();
        let keys = small_set(&set, tag);
        let bytes = bundle::pack(&set).unwrap();
        let path = dir.join(format!("{tag}.agecam-models"));
        std::fs::write(&path, &bytes).unwrap();
        let id = bundle::read(&bytes, &path, &keys).unwrap().id();
        (path, id, keys)
    }

    fn pass(_: &Path) -> Result<Vec<String>, String> {
        Ok(vec!["PASS".into()])
    }

    /// The current set loads whole (signature and every hash), and is `a` or `b`.
    fn current_is_whole(store: &ModelStore, keys: &TrustedKeys, ids: &[&str]) -> String {
        let dir = store.current().expect("a current set");
        Manifest::load(&dir, keys).unwrap().verify_all().unwrap();
        let id = store.status().0.unwrap();
        assert!(ids.contains(&id.as_str()), "{id} not in {ids:?}");
        id
    }

    #[test]
    fn install_switches_keeps_the_previous_set_and_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(&dir.path().join("store"));
        let (a, id_a, keys) = bundle(dir.path(), "a");
        let (b, id_b, _) = bundle(dir.path(), "b");
        assert!(store.current().is_none());

        let done = store.install(&a, &keys, &mut pass, &mut |_| false).unwrap();
        assert_eq!(
            (done.current.as_str(), done.previous),
            (id_a.as_str(), None)
        );
        assert_eq!(done.checks, ["PASS"]);
        let done = store.install(&b, &keys, &mut pass, &mut |_| false).unwrap();
        assert_eq!(done.previous.as_deref(), Some(id_a.as_str()));
        assert_eq!(current_is_whole(&store, &keys, &[&id_b]), id_b);
        // The same bundle again changes nothing.
        assert!(
            !store
                .install(&b, &keys, &mut pass, &mut |_| false)
                .unwrap()
                .changed
        );

        let back = store.rollback(&keys).unwrap();
        assert_eq!(
            (back.current.as_str(), back.previous.as_deref()),
            (id_a.as_str(), Some(id_b.as_str()))
        );
        assert_eq!(current_is_whole(&store, &keys, &[&id_a]), id_a);
        // And forward again: rollback swaps the two.
        store.rollback(&keys).unwrap();
        assert_eq!(current_is_whole(&store, &keys, &[&id_b]), id_b);
    }

    /// The issue's test: a kill at every step of an install leaves the old or the new set,
    /// never a mix, and the next install completes.
    #[test]
    fn a_kill_at_every_step_leaves_the_old_or_the_new_set() {
        for step in Step::ALL {
            let dir = tempfile::tempdir().unwrap();
            let store = ModelStore::new(&dir.path().join("store"));
            let (a, id_a, keys) = bundle(dir.path(), "a");
            let (b, id_b, _) = bundle(dir.path(), "b");
            store.install(&a, &keys, &mut pass, &mut |_| false).unwrap();
            let err = store
                .install(&b, &keys, &mut pass, &mut |s| s == step)
                .unwrap_err();
            assert!(err.to_string().contains(&format!("{step:?}")));
            let now = current_is_whole(&store, &keys, &[&id_a, &id_b]);
            let expected = if step == Step::Switched { &id_b } else { &id_a };
            assert_eq!(&now, expected, "after a kill at {step:?}");
            // The next install finishes and cleans up what the killed one left.
            store.install(&b, &keys, &mut pass, &mut |_| false).unwrap();
            assert_eq!(current_is_whole(&store, &keys, &[&id_b]), id_b);
            let sets: Vec<String> = std::fs::read_dir(store.root().join(SETS))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                sets.iter().all(|s| s == &id_a || s == &id_b),
                "{step:?}: {sets:?}"
            );
            assert_eq!(store.rollback(&keys).unwrap().current, id_a, "{step:?}");
        }
    }

    #[test]
    fn a_bad_bundle_or_a_failed_selftest_leaves_the_current_set() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(&dir.path().join("store"));
        let (a, id_a, keys) = bundle(dir.path(), "a");
        let (b, _, _) = bundle(dir.path(), "b");
        store.install(&a, &keys, &mut pass, &mut |_| false).unwrap();

        let msg = store
            .install(&b, &keys, &mut |_| Err("found no face".into()), &mut |_| {
                false
            })
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("b.agecam-models")
                && msg.contains("found no face")
                && msg.contains("keeps its current models"),
            "{msg}"
        );
        assert_eq!(current_is_whole(&store, &keys, &[&id_a]), id_a);

        let mut bytes = std::fs::read(&b).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        std::fs::write(&b, &bytes).unwrap();
        assert!(store.install(&b, &keys, &mut pass, &mut |_| false).is_err());
        assert_eq!(current_is_whole(&store, &keys, &[&id_a]), id_a);

        let msg = store
            .install(&dir.path().join("none"), &keys, &mut pass, &mut |_| false)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("none") && msg.contains("cannot read the model bundle"),
            "{msg}"
        );
    }

    #[test]
    fn an_edited_installed_set_is_refused_at_load_and_at_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(&dir.path().join("store"));
        let (a, _, keys) = bundle(dir.path(), "a");
        let (b, _, _) = bundle(dir.path(), "b");
        store.install(&a, &keys, &mut pass, &mut |_| false).unwrap();
        store.install(&b, &keys, &mut pass, &mut |_| false).unwrap();
        let previous = store.set_dir(&store.status().1.unwrap());
        std::fs::write(previous.join("det.onnx"), b"swapped").unwrap();
        let msg = store.rollback(&keys).unwrap_err().to_string();
        assert!(
            msg.contains("det.onnx") && msg.contains("damaged or was replaced"),
            "{msg}"
        );
        assert!(store.rollback(&keys).is_err());
        let msg = ModelStore::new(&dir.path().join("empty"))
            .rollback(&keys)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no previous model set"), "{msg}");
    }
}
