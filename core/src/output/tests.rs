#![expect(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::os::unix::fs::FileTypeExt;
use std::process::Command;

use super::*;

fn write(path: &Path, text: &str) -> Output {
    let mut stdout = Vec::new();
    let output = write_output(path, &mut stdout, text.as_bytes()).unwrap();
    assert!(stdout.is_empty(), "only `-` writes to stdout");
    output
}

/// Only the written file is left in `dir`: no temporary beside it.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn a_dash_is_standard_output() {
    let mut stdout = Vec::new();
    let output = write_output(Path::new("-"), &mut stdout, b"{}\n").unwrap();
    assert_eq!(output, Output::Stdout);
    assert_eq!(stdout, b"{}\n");
    assert!(!Path::new("-").exists(), "no file named `-`");
    assert!(matches!(Output::Stdout.write_file("model", |_| Ok(())), Err(WriteError::NotOnStdout { what: "model" })));
}

#[test]
fn a_new_path_and_a_regular_file_are_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    assert_eq!(write(&path, "first"), Output::Replace(path.clone()));
    assert_eq!(fs::read_to_string(&path).unwrap(), "first");
    assert_eq!(write(&path, "second"), Output::Replace(path.clone()));
    assert_eq!(fs::read_to_string(&path).unwrap(), "second");
    assert_eq!(names(dir.path()), ["plan.json"]);
    assert_eq!(Output::Replace(path).folder(), Some(dir.path()));
    assert_eq!(Output::for_path(Path::new("plan.json")).unwrap().folder(), Some(Path::new(".")));
}

#[test]
fn a_replaced_file_keeps_its_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.toml");
    fs::write(&path, "old").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    write(&path, "new");
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_failed_write_leaves_the_old_file_and_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    fs::write(&path, "old").unwrap();
    let output = Output::for_path(&path).unwrap();
    let error = output.write(&mut Vec::new(), |w| {
        w.write_all(b"half")?;
        Err(io::Error::other("interrupted"))
    });
    match error {
        Err(WriteError::Io { path: named, .. }) => assert_eq!(named, path),
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), "old");
    assert_eq!(names(dir.path()), ["plan.json"]);
    let missing = dir.path().join("no/such/folder/plan.json");
    let error = write_output(&missing, &mut Vec::new(), b"{}").unwrap_err();
    assert!(error.to_string().starts_with(&format!("`{}`: ", missing.display())), "{error}");
}

#[test]
fn a_symlink_is_kept_and_its_target_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.json");
    fs::write(&target, "old").unwrap();
    // A relative link, resolved from the link's folder, not the working directory.
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink("real.json", &link).unwrap();
    assert_eq!(write(&link, "new"), Output::Replace(target.clone()));
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is still a link");
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("real.json"));
    assert_eq!(fs::read_to_string(&target).unwrap(), "new");
    // A dangling link: its target is created.
    let dangling = dir.path().join("dangling.json");
    std::os::unix::fs::symlink(dir.path().join("later.json"), &dangling).unwrap();
    write(&dangling, "created");
    assert!(fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_to_string(dir.path().join("later.json")).unwrap(), "created");
    assert_eq!(names(dir.path()), ["dangling.json", "later.json", "link.json", "real.json"]);
}

#[test]
fn a_loop_of_symlinks_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    assert!(matches!(Output::for_path(&a), Err(WriteError::TooManyLinks { .. })));
}

#[test]
fn a_character_device_is_written_in_place_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("null");
    // The same device as `/dev/null` (1, 3), made in a temporary folder.
    let made = Command::new("mknod").arg(&device).args(["c", "1", "3"]).output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot make a character device here (mknod needs root): {made:?}");
        return;
    }
    assert_eq!(write(&device, "a plan"), Output::InPlace(device.clone()));
    let meta = fs::symlink_metadata(&device).unwrap();
    assert!(meta.file_type().is_char_device(), "still a character device: {meta:?}");
    assert_eq!(names(dir.path()), ["null"]);
    // Through a link, too.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&device, &link).unwrap();
    assert_eq!(write(&link, "a plan"), Output::InPlace(device.clone()));
    assert!(fs::symlink_metadata(&device).unwrap().file_type().is_char_device());
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
}

#[test]
fn a_fifo_is_written_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).output().expect("mkfifo runs");
    assert!(made.status.success(), "{made:?}");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read_to_string(fifo).unwrap())
    };
    assert_eq!(write(&fifo, "through the pipe"), Output::InPlace(fifo.clone()));
    assert_eq!(reader.join().unwrap(), "through the pipe");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "still a FIFO");
    assert_eq!(names(dir.path()), ["pipe"]);
}

#[test]
fn an_existing_folder_is_an_error_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("plans");
    fs::create_dir(&folder).unwrap();
    assert!(write_output(&folder, &mut Vec::new(), b"{}").is_err());
    assert!(folder.is_dir());
}
