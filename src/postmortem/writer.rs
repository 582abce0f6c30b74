//! Writing drafts to disk without ever destroying a person's edits.
//!
//! The database holds the rendered draft (what the API and Slack serve, the same on every
//! replica); the files are an export of it that each replica may write, into a directory of
//! its own or one shared by all (NFS). A draft is `<output_dir>/<ID>.md`, its charts live in
//! `<output_dir>/<ID>/`. Every file is written atomically (temp file in the same directory,
//! fsync, rename, fsync of the directory).
//!
//! # Whose is the file on disk?
//!
//! Before replacing `<ID>.md`, its SHA-256 is compared with the hashes incidentd knows it
//! produced ([`decide`]):
//!
//! - the new draft's (then nothing needs writing);
//! - the stored draft's as it was before this render, i.e. what was last rendered by any
//!   replica (the caller passes it, see [`DraftWriter::write_with`]);
//! - the ones in the sidecar `.<ID>.md.sha256`, what incidentd last wrote to *this*
//!   directory (one hash, or two while a replacement is in flight).
//!
//! A file that matches none of them was written or edited by a person: it is kept, and the
//! new version goes to `<ID>.generated.md` beside it, on every later render too. A missing
//! or foreign sidecar (deleted, or a directory another replica filled) therefore never
//! makes an edit look like incidentd's; at worst an unedited file incidentd cannot vouch
//! for is kept and the new version written beside it. A crash between the database save
//! and the export leaves the file at the version before, which the sidecar still names, so
//! the next render replaces it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::PostmortemError;

/// An SVG chart to store beside a draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// File name inside `<ID>/`, e.g. `pool-ratio.svg`; no directories.
    pub file_name: String,
    pub svg: String,
}

/// What [`DraftWriter::write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The draft was created or updated.
    Written { path: PathBuf },
    /// The draft on disk already had exactly this content; nothing was written.
    Unchanged { path: PathBuf },
    /// Someone edited the draft on disk, so it was left alone and the new version went
    /// beside it. Worth a log line naming both files.
    KeptEdited { edited: PathBuf, generated: PathBuf },
}

impl WriteOutcome {
    /// The file holding the newly rendered content.
    pub fn rendered_path(&self) -> &Path {
        match self {
            WriteOutcome::Written { path } | WriteOutcome::Unchanged { path } => path,
            WriteOutcome::KeptEdited { generated, .. } => generated,
        }
    }
}

/// Writes drafts and their charts into one output directory.
#[derive(Debug, Clone)]
pub struct DraftWriter {
    output_dir: PathBuf,
}

impl DraftWriter {
    pub fn new(output_dir: impl Into<PathBuf>) -> Self {
        DraftWriter {
            output_dir: output_dir.into(),
        }
    }

    pub fn output_dir(&self) -> &Path {
        &self.output_dir
    }

    /// `<output_dir>/<ID>.md`.
    pub fn draft_path(&self, id: &str) -> PathBuf {
        self.output_dir.join(format!("{id}.md"))
    }

    /// `<output_dir>/<ID>.generated.md`, used when the draft was edited by hand.
    pub fn generated_path(&self, id: &str) -> PathBuf {
        self.output_dir.join(format!("{id}.generated.md"))
    }

    /// `<output_dir>/<ID>/`, where the charts go.
    pub fn chart_dir(&self, id: &str) -> PathBuf {
        self.output_dir.join(id)
    }

    /// Remove the temp files that a process killed in the middle of [`write_atomically`] left
    /// in the output directory and its chart directories (the finished files are untouched:
    /// the rename that makes a file visible is atomic). Called once at start-up; returns how
    /// many were removed. A missing output directory has none.
    pub fn sweep_temp_files(&self) -> io::Result<usize> {
        fn sweep(dir: &Path, depth: u8) -> io::Result<usize> {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            };
            let mut removed = 0;
            for entry in entries {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() && depth > 0 {
                    removed += sweep(&entry.path(), depth - 1)?;
                } else if kind.is_file() && is_temp_name(&entry.file_name().to_string_lossy()) {
                    fs::remove_file(entry.path())?;
                    removed += 1;
                }
            }
            Ok(removed)
        }
        sweep(&self.output_dir, 1)
    }

    fn sidecar_path(&self, id: &str) -> PathBuf {
        self.output_dir.join(format!(".{id}.md.sha256"))
    }

    /// Writes the draft for incident `id` and its charts. Charts are machine output and
    /// are always replaced; the draft only when nobody edited it since incidentd last
    /// wrote it (by the sidecar alone: see [`DraftWriter::write_with`]).
    pub fn write(
        &self,
        id: &str,
        markdown: &str,
        charts: &[Chart],
    ) -> Result<WriteOutcome, PostmortemError> {
        self.write_with(id, markdown, charts, &[])
    }

    /// [`DraftWriter::write`], also counting as incidentd's a file whose SHA-256 (hex) is
    /// one of `rendered`: the hashes the database says incidentd rendered for this draft
    /// (the stored draft before this one). See the module documentation for the rule.
    pub fn write_with(
        &self,
        id: &str,
        markdown: &str,
        charts: &[Chart],
        rendered: &[&str],
    ) -> Result<WriteOutcome, PostmortemError> {
        check_name(id, "incident id")?;
        for c in charts {
            check_name(&c.file_name, "chart file name")?;
        }
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source: io::Error| PostmortemError::Io { path, source }
        };
        fs::create_dir_all(&self.output_dir).map_err(io_err(&self.output_dir))?;
        if !charts.is_empty() {
            let dir = self.chart_dir(id);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            for c in charts {
                write_atomically(&dir.join(&c.file_name), c.svg.as_bytes())?;
            }
        }

        let draft = self.draft_path(id);
        let sidecar = self.sidecar_path(id);
        let new_hash = sha256_hex(markdown.as_bytes());
        let disk_hash = match fs::read(&draft) {
            Ok(bytes) => Some(sha256_hex(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&draft)(e)),
        };
        let written: Vec<String> = match fs::read_to_string(&sidecar) {
            Ok(text) => text.lines().map(|l| l.trim().to_string()).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&sidecar)(e)),
        };
        let written: Vec<&str> = written.iter().map(String::as_str).collect();
        match decide(disk_hash.as_deref(), &new_hash, &written, rendered) {
            Decision::KeepEdited => {
                let generated = self.generated_path(id);
                write_atomically(&generated, markdown.as_bytes())?;
                return Ok(WriteOutcome::KeptEdited {
                    edited: draft,
                    generated,
                });
            }
            Decision::Unchanged => {
                // This directory now remembers the file as incidentd's even if its sidecar
                // was lost or another replica wrote the file.
                if written != [new_hash.as_str()] {
                    write_atomically(&sidecar, format!("{new_hash}\n").as_bytes())?;
                }
                // A file left from the time the draft was edited is stale now.
                remove_if_present(&self.generated_path(id))?;
                return Ok(WriteOutcome::Unchanged { path: draft });
            }
            Decision::Replace => {
                let disk_hash = disk_hash.unwrap_or_default();
                // Both hashes while the rename is in flight: a crash in between leaves a
                // draft that is still recognised as ours, whichever version it holds.
                write_atomically(&sidecar, format!("{disk_hash}\n{new_hash}\n").as_bytes())?;
            }
            Decision::Create => {
                write_atomically(&sidecar, format!("{new_hash}\n").as_bytes())?;
            }
        }
        write_atomically(&draft, markdown.as_bytes())?;
        write_atomically(&sidecar, format!("{new_hash}\n").as_bytes())?;
        remove_if_present(&self.generated_path(id))?;
        Ok(WriteOutcome::Written { path: draft })
    }
}

/// What to do with `<ID>.md`, decided by [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No draft on disk: write it.
    Create,
    /// The file already holds the new draft.
    Unchanged,
    /// The file holds something incidentd rendered or wrote: replace it.
    Replace,
    /// The file holds something incidentd never produced, a person's edit: keep it and write
    /// the new draft beside it.
    KeepEdited,
}

/// The rule for a draft file, from SHA-256 hashes (hex): `on_disk` is the file's (`None`
/// when there is none), `new` the draft about to be written, `written` what the sidecar
/// says incidentd last wrote to this directory, and `rendered` what the database says was
/// last rendered (by any replica). A file matching none of them is a person's.
pub fn decide(on_disk: Option<&str>, new: &str, written: &[&str], rendered: &[&str]) -> Decision {
    let Some(disk) = on_disk else {
        return Decision::Create;
    };
    if disk == new {
        Decision::Unchanged
    } else if written.contains(&disk) || rendered.contains(&disk) {
        Decision::Replace
    } else {
        Decision::KeepEdited
    }
}

/// Names become file names: refuse anything that could leave the output directory.
fn check_name(name: &str, what: &'static str) -> Result<(), PostmortemError> {
    let bad = name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\', '\0'])
        || name.contains("..");
    if bad {
        return Err(PostmortemError::InvalidName {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn remove_if_present(path: &Path) -> Result<(), PostmortemError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PostmortemError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether a file name is one of [`write_atomically`]'s temp files: `.<name>.tmp-<pid>-<n>`.
fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let Some((_, suffix)) = rest.rsplit_once(".tmp-") else {
        return false;
    };
    let mut parts = suffix.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(pid), Some(n), None)
            if !pid.is_empty() && !n.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && n.bytes().all(|b| b.is_ascii_digit())
    )
}

/// Temp file beside the target, fsync, rename over it, fsync the directory: a reader sees
/// the old or the new file, never half of one, even after a crash.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PostmortemError> {
    let err = |p: &Path| {
        let p = p.to_path_buf();
        move |source: io::Error| PostmortemError::Io { path: p, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(err(&tmp))?;
        f.write_all(bytes).map_err(err(&tmp))?;
        f.sync_all().map_err(err(&tmp))?;
        fs::rename(&tmp, path).map_err(err(path))?;
        sync_dir(dir).map_err(err(dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Windows cannot open a directory as a file; the rename is durable enough there.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (tempfile::TempDir, DraftWriter) {
        let dir = tempfile::tempdir().expect("temp dir");
        let w = DraftWriter::new(dir.path().join("drafts"));
        (dir, w)
    }

    #[test]
    fn a_new_draft_is_written_with_its_charts() {
        let (_d, w) = writer();
        let chart = Chart {
            file_name: "pool.svg".into(),
            svg: "<svg/>".into(),
        };
        let out = w.write("INC-2026-0001", "# v1\n", &[chart]).expect("write");
        assert_eq!(
            out,
            WriteOutcome::Written {
                path: w.draft_path("INC-2026-0001")
            }
        );
        assert_eq!(
            fs::read_to_string(w.draft_path("INC-2026-0001")).expect("read"),
            "# v1\n"
        );
        assert_eq!(
            fs::read_to_string(w.chart_dir("INC-2026-0001").join("pool.svg")).expect("read"),
            "<svg/>"
        );
    }

    #[test]
    fn an_untouched_draft_is_replaced_and_an_identical_one_left_alone() {
        let (_d, w) = writer();
        w.write("INC-2026-0001", "v1", &[]).expect("write");
        let out = w.write("INC-2026-0001", "v2", &[]).expect("write");
        assert!(matches!(out, WriteOutcome::Written { .. }));
        let out = w.write("INC-2026-0001", "v2", &[]).expect("write");
        assert!(matches!(out, WriteOutcome::Unchanged { .. }));
        assert_eq!(
            fs::read_to_string(w.draft_path("INC-2026-0001")).expect("read"),
            "v2"
        );
    }

    #[test]
    fn a_hand_edited_draft_survives_and_the_new_version_goes_beside_it() {
        let (_d, w) = writer();
        let id = "INC-2026-0002";
        w.write(id, "generated v1", &[]).expect("write");
        fs::write(
            w.draft_path(id),
            "generated v1\n\nRoot cause: a slow query.",
        )
        .expect("edit");

        let out = w.write(id, "generated v2", &[]).expect("write");
        assert_eq!(
            out,
            WriteOutcome::KeptEdited {
                edited: w.draft_path(id),
                generated: w.generated_path(id),
            }
        );
        assert_eq!(
            fs::read_to_string(w.draft_path(id)).expect("read"),
            "generated v1\n\nRoot cause: a slow query."
        );
        assert_eq!(
            fs::read_to_string(w.generated_path(id)).expect("read"),
            "generated v2"
        );
        // And it stays that way on every later render.
        w.write(id, "generated v3", &[]).expect("write");
        assert!(fs::read_to_string(w.draft_path(id))
            .expect("read")
            .contains("slow query"));
        assert_eq!(
            fs::read_to_string(w.generated_path(id)).expect("read"),
            "generated v3"
        );
    }

    #[test]
    fn a_draft_incidentd_never_wrote_is_treated_as_edited() {
        let (_d, w) = writer();
        let id = "INC-2026-0003";
        fs::create_dir_all(w.output_dir()).expect("mkdir");
        fs::write(w.draft_path(id), "written by a person").expect("write");
        let out = w.write(id, "generated", &[]).expect("write");
        assert!(matches!(out, WriteOutcome::KeptEdited { .. }));
        assert_eq!(
            fs::read_to_string(w.draft_path(id)).expect("read"),
            "written by a person"
        );
    }

    #[test]
    fn the_rule_keeps_whatever_incidentd_never_produced() {
        use Decision::*;
        let (new, old, older, edit) = ("n", "o", "oo", "e");
        // Nothing on disk, or the new draft already there.
        assert_eq!(decide(None, new, &[], &[]), Create);
        assert_eq!(decide(None, new, &[edit], &[old]), Create);
        assert_eq!(decide(Some(new), new, &[], &[]), Unchanged);
        // What this directory last got, or what was last rendered (any replica): replaced.
        assert_eq!(decide(Some(old), new, &[old], &[]), Replace);
        assert_eq!(decide(Some(old), new, &[older, old], &[]), Replace);
        assert_eq!(decide(Some(old), new, &[], &[old]), Replace);
        assert_eq!(decide(Some(older), new, &[older], &[old]), Replace);
        // Anything else is a person's: with or without a sidecar, whatever the database says.
        assert_eq!(decide(Some(edit), new, &[], &[]), KeepEdited);
        assert_eq!(decide(Some(edit), new, &[old], &[]), KeepEdited);
        assert_eq!(decide(Some(edit), new, &[], &[old]), KeepEdited);
        assert_eq!(decide(Some(edit), new, &[older, old], &[old]), KeepEdited);
    }

    #[test]
    fn without_its_sidecar_a_draft_is_still_known_by_the_stored_hash() {
        let (_d, w) = writer();
        let id = "INC-2026-0004";
        w.write(id, "v1", &[]).expect("write");
        fs::remove_file(w.sidecar_path(id)).expect("remove sidecar");
        // Another replica rendered v1 (the database says so): the file is replaced.
        let v1 = sha256_hex(b"v1");
        let out = w.write_with(id, "v2", &[], &[&v1]).expect("write");
        assert_eq!(
            out,
            WriteOutcome::Written {
                path: w.draft_path(id)
            }
        );
        assert_eq!(fs::read_to_string(w.draft_path(id)).expect("read"), "v2");
        assert_eq!(
            fs::read_to_string(w.sidecar_path(id)).expect("read"),
            format!("{}\n", sha256_hex(b"v2"))
        );
    }

    #[test]
    fn without_its_sidecar_an_edited_draft_is_kept() {
        let (_d, w) = writer();
        let id = "INC-2026-0005";
        w.write(id, "v1", &[]).expect("write");
        fs::write(w.draft_path(id), "v1 and my root cause").expect("edit");
        fs::remove_file(w.sidecar_path(id)).expect("remove sidecar");
        let v1 = sha256_hex(b"v1");
        let out = w.write_with(id, "v2", &[], &[&v1]).expect("write");
        assert!(matches!(out, WriteOutcome::KeptEdited { .. }), "{out:?}");
        assert_eq!(
            fs::read_to_string(w.draft_path(id)).expect("read"),
            "v1 and my root cause"
        );
        assert_eq!(
            fs::read_to_string(w.generated_path(id)).expect("read"),
            "v2"
        );
    }

    #[test]
    fn a_file_that_already_holds_the_new_draft_is_adopted() {
        let (_d, w) = writer();
        let id = "INC-2026-0006";
        fs::create_dir_all(w.output_dir()).expect("mkdir");
        // Written by another replica into a shared directory whose sidecar was lost.
        fs::write(w.draft_path(id), "v1").expect("write");
        let out = w.write(id, "v1", &[]).expect("write");
        assert!(matches!(out, WriteOutcome::Unchanged { .. }));
        assert_eq!(
            fs::read_to_string(w.sidecar_path(id)).expect("read"),
            format!("{}\n", sha256_hex(b"v1"))
        );
        assert!(matches!(
            w.write(id, "v2", &[]).expect("write"),
            WriteOutcome::Written { .. }
        ));
    }

    #[test]
    fn names_that_could_leave_the_output_directory_are_refused() {
        let (_d, w) = writer();
        for id in ["../x", "a/b", ".hidden", ""] {
            assert!(matches!(
                w.write(id, "x", &[]),
                Err(PostmortemError::InvalidName { .. })
            ));
        }
        let chart = Chart {
            file_name: "../../etc/x.svg".into(),
            svg: String::new(),
        };
        assert!(w.write("INC-2026-0001", "x", &[chart]).is_err());
    }

    #[test]
    fn temp_files_left_by_a_crash_are_swept_and_nothing_else_is_touched() {
        let (_d, w) = writer();
        let chart = Chart {
            file_name: "a.svg".into(),
            svg: "<svg/>".into(),
        };
        w.write("INC-2026-0001", "# draft\n", &[chart])
            .expect("write");
        let left = [
            w.output_dir().join(".INC-2026-0001.md.tmp-4242-7"),
            w.chart_dir("INC-2026-0001").join(".a.svg.tmp-4242-8"),
        ];
        for p in &left {
            fs::write(p, "half").expect("write");
        }
        // Look-alikes that are not ours stay.
        let kept = w.output_dir().join(".notes.tmp-x-1");
        fs::write(&kept, "mine").expect("write");
        assert_eq!(w.sweep_temp_files().expect("sweep"), 2);
        assert!(left.iter().all(|p| !p.exists()));
        assert!(kept.exists());
        assert!(w.draft_path("INC-2026-0001").exists());
        assert!(w.chart_dir("INC-2026-0001").join("a.svg").exists());
        assert_eq!(w.sweep_temp_files().expect("sweep"), 0);
        let missing = DraftWriter::new(w.output_dir().join("never-made"));
        assert_eq!(missing.sweep_temp_files().expect("sweep"), 0);
    }

    #[test]
    fn no_temp_files_are_left_behind() {
        let (_d, w) = writer();
        w.write("INC-2026-0001", "v1", &[]).expect("write");
        w.write("INC-2026-0001", "v2", &[]).expect("write");
        let leftovers: Vec<_> = fs::read_dir(w.output_dir())
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
