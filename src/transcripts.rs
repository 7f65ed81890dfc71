//! Shared transcripts: every account's `<config_dir>/projects` is a symlink
//! to one folder (`failover.shared_transcripts`), so a conversation started
//! under one account can be resumed under another.
//!
//! An account's existing real `projects` folder is merged into the shared
//! tree first, then replaced by the link. No transcript is ever deleted or
//! overwritten: a file present on both sides keeps both copies (the longer
//! one, transcripts only grow, under the original name; the other beside it
//! as `NAME.conflict-LABEL[-N]`, a name claude does not list). Whatever
//! cannot be moved stays in the old folder, which is then renamed aside
//! (`projects.pre-share-TIMESTAMP`) rather than removed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// What `share` did for one account.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Shared {
    /// The link was already in place.
    pub already: bool,
    /// Files moved into the shared tree.
    pub moved: usize,
    /// Files that existed on both sides (both kept, one renamed).
    pub conflicts: Vec<PathBuf>,
    /// Where leftovers of the old folder were put aside, if anything stayed.
    pub aside: Option<PathBuf>,
}

/// Makes `<config_dir>/projects` a symlink to `shared`, merging an existing
/// folder into it first. `label` (the account name) marks renamed conflicts.
pub fn share(config_dir: &Path, shared: &Path, label: &str) -> io::Result<Shared> {
    fs::create_dir_all(shared)?;
    fs::create_dir_all(config_dir)?;
    let shared_real = fs::canonicalize(shared)?;
    let link = config_dir.join("projects");
    let mut out = Shared::default();
    match fs::symlink_metadata(&link) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
        Ok(md) if md.file_type().is_symlink() => {
            match fs::canonicalize(&link) {
                Ok(t) if t == shared_real => {
                    out.already = true;
                    return Ok(out);
                }
                Ok(t) if t.is_dir() => {
                    // Linked somewhere else: bring those transcripts over
                    // (copies: that folder is not ours to empty), then relink.
                    copy_merge(&t, &shared_real, label, &mut out)?;
                }
                _ => {} // dangling: nothing to merge
            }
            // Removing a symlink removes no transcript.
            fs::remove_file(&link)?;
        }
        Ok(md) if md.is_dir() => {
            move_merge(&link, &shared_real, label, &mut out)?;
            if remove_empty_tree(&link).is_err() || link.exists() {
                let aside = aside_name(&link);
                fs::rename(&link, &aside)?;
                log::warn!(
                    "{}: some entries could not be moved to {}; kept in {}",
                    link.display(),
                    shared_real.display(),
                    aside.display()
                );
                out.aside = Some(aside);
            }
        }
        Ok(_) => {
            // A plain file where the folder should be: keep it, aside.
            let aside = aside_name(&link);
            fs::rename(&link, &aside)?;
            out.aside = Some(aside);
        }
    }
    // Create the link under a temporary name and rename it into place, so
    // `projects` is never half there.
    let tmp = config_dir.join(format!(".projects.link-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&shared_real, &tmp)?;
    if let Err(e) = fs::rename(&tmp, &link) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(out)
}

/// Moves every file under `from` into `to` (same relative path), never
/// overwriting. Empty folders are left behind for the caller.
fn move_merge(from: &Path, to: &Path, label: &str, out: &mut Shared) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let ft = entry.file_type()?;
        if ft.is_dir() {
            match fs::symlink_metadata(&dst) {
                Ok(m) if !m.is_dir() => {
                    // A file where we need a folder: put the folder beside it.
                    let alt = free_name(&dst, label);
                    fs::rename(&src, &alt)?;
                    out.conflicts.push(alt);
                    out.moved += 1;
                }
                _ => move_merge(&src, &dst, label, out)?,
            }
            continue;
        }
        place(&src, &dst, label, out, true)?;
    }
    Ok(())
}

/// Like `move_merge`, but copies (for a folder we only link to).
fn copy_merge(from: &Path, to: &Path, label: &str, out: &mut Shared) -> io::Result<()> {
    fs::create_dir_all(to)?;
    if fs::canonicalize(from)? == fs::canonicalize(to)? {
        return Ok(());
    }
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if fs::symlink_metadata(&dst).is_ok_and(|m| !m.is_dir()) {
                continue;
            }
            copy_merge(&src, &dst, label, out)?;
        } else {
            place(&src, &dst, label, out, false)?;
        }
    }
    Ok(())
}

/// Puts one file at `dst`. On a clash both are kept: the longer (a
/// transcript only grows) takes the name, the other gets a conflict name.
fn place(src: &Path, dst: &Path, label: &str, out: &mut Shared, mv: bool) -> io::Result<()> {
    let transfer = |from: &Path, to: &Path| -> io::Result<()> {
        if mv {
            move_file(from, to)
        } else {
            copy_new(from, to)
        }
    };
    match fs::symlink_metadata(dst) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            transfer(src, dst)?;
            out.moved += 1;
        }
        Err(e) => return Err(e),
        Ok(existing) => {
            if mv && same_file(src, dst) {
                return Ok(());
            }
            let incoming = fs::symlink_metadata(src)?.len();
            if incoming > existing.len() && existing.is_file() {
                let alt = free_name(dst, "shared");
                fs::rename(dst, &alt)?;
                transfer(src, dst)?;
                out.conflicts.push(alt);
            } else {
                let alt = free_name(dst, label);
                transfer(src, &alt)?;
                out.conflicts.push(alt);
            }
            out.moved += 1;
        }
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Renames without replacing; across file systems copies then removes the
/// source only once the copy is complete and synced.
fn move_file(from: &Path, to: &Path) -> io::Result<()> {
    // hard_link fails when `to` exists: an atomic no-clobber rename.
    match fs::hard_link(from, to) {
        Ok(()) => fs::remove_file(from),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            copy_new(from, to)?;
            fs::remove_file(from)
        }
    }
}

/// Copies to a path that must not exist yet.
fn copy_new(from: &Path, to: &Path) -> io::Result<()> {
    let mut src = fs::File::open(from)?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)?;
    io::copy(&mut src, &mut dst)?;
    dst.sync_all()?;
    if let Ok(md) = src.metadata() {
        let _ = dst.set_permissions(md.permissions());
        if let Ok(m) = md.modified() {
            let _ = dst.set_modified(m);
        }
    }
    Ok(())
}

/// `NAME.conflict-LABEL`, or with `-2`, `-3`… until free.
fn free_name(path: &Path, label: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut n = 1;
    loop {
        let candidate = if n == 1 {
            format!("{name}.conflict-{label}")
        } else {
            format!("{name}.conflict-{label}-{n}")
        };
        let p = path.with_file_name(candidate);
        if fs::symlink_metadata(&p).is_err() {
            return p;
        }
        n += 1;
    }
}

fn aside_name(path: &Path) -> PathBuf {
    let base = format!("projects.pre-share-{}", crate::timefmt::now_secs());
    let mut p = path.with_file_name(&base);
    let mut n = 2;
    while fs::symlink_metadata(&p).is_ok() {
        p = path.with_file_name(format!("{base}-{n}"));
        n += 1;
    }
    p
}

/// Removes a tree of empty folders; fails (leaving it) if a file remains.
fn remove_empty_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_empty_tree(&entry.path())?;
        }
    }
    fs::remove_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, s).unwrap();
    }

    /// Every file under `dir` with its content, by path relative to `dir`.
    fn files(dir: &Path) -> Vec<(String, String)> {
        let mut v = Vec::new();
        fn walk(root: &Path, d: &Path, v: &mut Vec<(String, String)>) {
            for e in fs::read_dir(d).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, v);
                } else {
                    v.push((
                        p.strip_prefix(root).unwrap().display().to_string(),
                        fs::read_to_string(&p).unwrap(),
                    ));
                }
            }
        }
        walk(dir, dir, &mut v);
        v.sort();
        v
    }

    #[test]
    fn fresh_account_gets_a_link() {
        let t = tempfile::tempdir().unwrap();
        let cfg = t.path().join("acct");
        let shared = t.path().join("shared/projects");
        let r = share(&cfg, &shared, "a").unwrap();
        assert!(!r.already);
        let link = cfg.join("projects");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::canonicalize(&link).unwrap(),
            fs::canonicalize(&shared).unwrap()
        );
        assert!(share(&cfg, &shared, "a").unwrap().already);
    }

    #[test]
    fn existing_folder_is_merged_without_loss() {
        let t = tempfile::tempdir().unwrap();
        let cfg = t.path().join("acct");
        let shared = t.path().join("shared");
        write(&cfg.join("projects/-p/one.jsonl"), "main one\n");
        write(&cfg.join("projects/-p/both.jsonl"), "main both, longer\n");
        write(&cfg.join("projects/-p/short.jsonl"), "m\n");
        write(&cfg.join("projects/-q/sub/deep.txt"), "deep\n");
        write(&shared.join("-p/both.jsonl"), "shared both\n");
        write(&shared.join("-p/short.jsonl"), "shared short is longer\n");
        write(&shared.join("-r/other.jsonl"), "other\n");
        let r = share(&cfg, &shared, "main").unwrap();
        assert_eq!(r.conflicts.len(), 2, "{r:?}");
        assert!(r.aside.is_none());
        assert_eq!(
            files(&shared),
            vec![
                ("-p/both.jsonl".into(), "main both, longer\n".into()),
                (
                    "-p/both.jsonl.conflict-shared".into(),
                    "shared both\n".into()
                ),
                ("-p/one.jsonl".into(), "main one\n".into()),
                ("-p/short.jsonl".into(), "shared short is longer\n".into()),
                ("-p/short.jsonl.conflict-main".into(), "m\n".into()),
                ("-q/sub/deep.txt".into(), "deep\n".into()),
                ("-r/other.jsonl".into(), "other\n".into()),
            ]
        );
        let link = cfg.join("projects");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::read_to_string(link.join("-p/one.jsonl")).unwrap(),
            "main one\n"
        );
        // A second account merging the same names keeps everything again.
        let cfg2 = t.path().join("acct2");
        write(&cfg2.join("projects/-p/one.jsonl"), "b1\n");
        share(&cfg2, &shared, "backup").unwrap();
        assert_eq!(
            fs::read_to_string(shared.join("-p/one.jsonl.conflict-backup")).unwrap(),
            "b1\n"
        );
        assert_eq!(
            fs::read_to_string(shared.join("-p/one.jsonl")).unwrap(),
            "main one\n"
        );
    }

    #[test]
    fn link_elsewhere_is_copied_then_relinked() {
        let t = tempfile::tempdir().unwrap();
        let cfg = t.path().join("acct");
        let shared = t.path().join("shared");
        let elsewhere = t.path().join("elsewhere");
        write(&elsewhere.join("-p/x.jsonl"), "x\n");
        fs::create_dir_all(&cfg).unwrap();
        std::os::unix::fs::symlink(&elsewhere, cfg.join("projects")).unwrap();
        share(&cfg, &shared, "a").unwrap();
        assert_eq!(
            fs::read_to_string(shared.join("-p/x.jsonl")).unwrap(),
            "x\n"
        );
        assert_eq!(
            fs::read_to_string(elsewhere.join("-p/x.jsonl")).unwrap(),
            "x\n"
        );
        assert_eq!(
            fs::canonicalize(cfg.join("projects")).unwrap(),
            fs::canonicalize(&shared).unwrap()
        );
    }

    #[test]
    fn a_file_named_projects_is_kept_aside() {
        let t = tempfile::tempdir().unwrap();
        let cfg = t.path().join("acct");
        write(&cfg.join("projects"), "not a folder");
        let r = share(&cfg, &t.path().join("shared"), "a").unwrap();
        let aside = r.aside.unwrap();
        assert_eq!(fs::read_to_string(aside).unwrap(), "not a folder");
        assert!(cfg.join("projects").is_dir());
    }
}
