//! `scripts/package`, the one zip certsync is deployed from (issue 16).
//!
//! The script packages the debug binary cargo built for this test (`--binary`), so no release build runs here. The
//! zip's central directory is read by hand below (no zip crate, no unzip): names, the system that made each entry and
//! its Unix mode. The function folders the zip must hold are found here with `std::fs`, independently of the script's
//! own glob, so a function the script forgot fails this test.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use sha2::{Digest, Sha256};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/package` with these arguments (through bash: the test does not depend on the file's mode).
fn package(args: &[&std::ffi::OsStr]) -> Output {
    Command::new("bash").arg(repo().join("scripts/package")).args(args).output().expect("run scripts/package")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The top-level folders of the repository that hold a function.json: what the Functions host loads.
fn function_folders() -> BTreeSet<String> {
    let mut folders = BTreeSet::new();
    for entry in std::fs::read_dir(repo()).expect("read the repository root") {
        let entry = entry.expect("read a directory entry");
        if entry.path().join("function.json").is_file() {
            folders.insert(entry.file_name().into_string().expect("a UTF-8 folder name"));
        }
    }
    folders
}

/// One entry of a zip's central directory.
#[derive(Debug)]
struct Entry {
    name: String,
    /// The upper byte of "version made by": 3 is Unix, the only system whose mode bits the host reads.
    made_by: u8,
    /// The upper 16 bits of the external attributes: the Unix `st_mode` (file type and permissions).
    mode: u32,
    size: u32,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Reads the central directory (APPNOTE.TXT 4.3.12 and 4.3.16). No ZIP64: the package is far below 4 GiB.
fn central_directory(zip: &[u8]) -> Vec<Entry> {
    // The end of central directory record: 22 bytes and a comment of at most 65,535, so it is near the end.
    let lowest = zip.len().saturating_sub(22 + 65_535);
    let end = (lowest..=zip.len() - 22)
        .rev()
        .find(|&at| u32_at(zip, at) == 0x0605_4b50)
        .expect("an end of central directory record");
    let count = usize::from(u16_at(zip, end + 10));
    let mut at = usize::try_from(u32_at(zip, end + 16)).unwrap();
    assert_ne!(at, 0xFFFF_FFFF, "a ZIP64 package, which this reader does not read");
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        assert_eq!(u32_at(zip, at), 0x0201_4b50, "a central directory header at offset {at}");
        let name_length = usize::from(u16_at(zip, at + 28));
        let extra_length = usize::from(u16_at(zip, at + 30));
        let comment_length = usize::from(u16_at(zip, at + 32));
        entries.push(Entry {
            name: String::from_utf8(zip[at + 46..at + 46 + name_length].to_vec()).expect("a UTF-8 entry name"),
            made_by: zip[at + 5],
            mode: u32_at(zip, at + 38) >> 16,
            size: u32_at(zip, at + 24),
        });
        at += 46 + name_length + extra_length + comment_length;
    }
    entries
}

/// A fresh directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!("certsync-package-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;

#[test]
fn the_package_holds_host_json_every_function_folder_and_an_executable_handler_and_nothing_else() {
    // Arrange
    let out = TempDir::new();
    let binary = Path::new(env!("CARGO_BIN_EXE_certsync"));

    // Act
    let output = package(&["--binary".as_ref(), binary.as_os_str(), "--out".as_ref(), out.0.as_os_str()]);

    // Assert
    assert!(output.status.success(), "scripts/package failed: {}", describe(&output));
    let zip_name = format!("certsync-{VERSION}.zip");
    let zip_path = out.0.join(&zip_name);
    let zip = std::fs::read(&zip_path)
        .unwrap_or_else(|error| panic!("read {}: {error}\n{}", zip_path.display(), describe(&output)));
    let entries = central_directory(&zip);
    let names: BTreeSet<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
    assert_eq!(names.len(), entries.len(), "no name twice: {names:?}");
    let find = |name: &str| entries.iter().find(|entry| entry.name == name);

    let host = find("host.json").unwrap_or_else(|| panic!("host.json at the zip's root: {names:?}"));
    assert_eq!(u64::from(host.size), std::fs::metadata(repo().join("host.json")).unwrap().len(), "host.json as it is");

    let folders = function_folders();
    assert!(folders.len() >= 3, "the repository's function folders: {folders:?}");
    for folder in &folders {
        let definition = format!("{folder}/function.json");
        assert!(names.contains(definition.as_str()), "{definition} is missing from the package: {names:?}");
    }

    let handler = find("handler").unwrap_or_else(|| panic!("handler at the zip's root: {names:?}"));
    assert_eq!(handler.made_by, 3, "handler stored by a Unix system, so its mode counts");
    assert_eq!(handler.mode & S_IFMT, S_IFREG, "handler is a regular file: mode {:o}", handler.mode);
    assert_eq!(handler.mode & 0o7777, 0o755, "handler is executable (0755): mode {:o}", handler.mode);
    assert_eq!(u64::from(handler.size), std::fs::metadata(binary).unwrap().len(), "handler is the given binary");

    let unexpected: Vec<&Entry> = entries
        .iter()
        .filter(|entry| entry.name != "host.json" && entry.name != "handler")
        .filter(|entry| {
            !folders
                .iter()
                .any(|folder| entry.name.strip_prefix(folder.as_str()).is_some_and(|rest| rest.starts_with('/')))
        })
        .collect();
    assert!(unexpected.is_empty(), "nothing but host.json, the function folders and handler: {unexpected:?}");
    for entry in &entries {
        let expected = if entry.name.ends_with('/') {
            S_IFDIR | 0o755
        } else if entry.name == "handler" {
            S_IFREG | 0o755
        } else {
            S_IFREG | 0o644
        };
        assert_eq!((entry.made_by, entry.mode), (3, expected), "{}: Unix mode {:o}", entry.name, entry.mode);
    }

    let checksum_path = out.0.join(format!("{zip_name}.sha256"));
    let checksum = std::fs::read_to_string(&checksum_path)
        .unwrap_or_else(|error| panic!("read {}: {error}", checksum_path.display()));
    let digest: String = Sha256::digest(&zip).iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(
        checksum,
        format!("{digest}  {zip_name}\n"),
        "the .sha256 names the zip and matches it, as sha256sum -c reads it"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&zip_path.display().to_string()) && stdout.contains(&digest),
        "prints the zip and its sha256: {stdout}"
    );
}

#[test]
fn the_script_refuses_a_binary_that_does_not_exist_and_writes_nothing() {
    // Arrange
    let out = TempDir::new();
    let missing = out.0.join("no-such-certsync");

    // Act
    let output = package(&["--binary".as_ref(), missing.as_os_str(), "--out".as_ref(), out.0.join("dist").as_os_str()]);

    // Assert
    assert!(!output.status.success(), "a missing binary is refused: {}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&missing.display().to_string()) && stderr.contains("no such file"),
        "the message names the binary and the problem: {stderr}"
    );
    assert!(!out.0.join("dist").exists(), "no package, not even its folder");
}

#[test]
fn the_script_refuses_a_binary_that_is_not_a_linux_executable() {
    // Arrange
    let out = TempDir::new();
    let not_elf = out.0.join("certsync.exe");
    std::fs::write(&not_elf, b"MZ\x90\x00 a Windows build, say").unwrap();

    // Act
    let output = package(&["--binary".as_ref(), not_elf.as_os_str(), "--out".as_ref(), out.0.join("dist").as_os_str()]);

    // Assert
    assert!(!output.status.success(), "a binary the host cannot start is refused: {}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a 64-bit Linux (ELF) executable"), "the message names the problem: {stderr}");
    assert!(!out.0.join("dist").exists(), "no package, not even its folder");
}
