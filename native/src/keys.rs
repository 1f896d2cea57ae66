//! Key state: the key file (created with mode 0600, never overwritten unless asked) and the
//! in-memory JSON form, which is the key file's own format.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tailscale::keys::PersistState;

use crate::error::{Code, Failure, Result};

/// The subject of every `KEY_FILE` failure (the message names the file).
const KEY_FILE: &str = "key file";

#[derive(Serialize, Deserialize)]
struct KeyFile {
    key_state: PersistState,
}

/// Parses a key file's bytes. The format before tailscale-rs 0.5 (key pairs and disco keys
/// under `node_keys`, `machine_keys`, ...) is no longer read, as by the crate since 0.6: it is
/// named in the error so its owner knows why.
pub fn parse(bytes: &[u8]) -> std::result::Result<PersistState, String> {
    serde_json::from_slice::<KeyFile>(bytes).map(|file| file.key_state).map_err(|error| {
        let legacy = serde_json::from_slice::<serde_json::Value>(bytes)
            .is_ok_and(|value| value.pointer("/key_state/node_keys").is_some());
        if legacy {
            "written by tailscale-rs before 0.5, a format this version no longer reads".to_string()
        } else {
            error.to_string()
        }
    })
}

pub fn to_json(state: &PersistState) -> String {
    serde_json::to_string(&KeyFile { key_state: state.clone() }).expect("key state always serializes")
}

/// Parses in-memory key state given as the key file's JSON.
pub fn from_json(json: &str) -> Result<PersistState> {
    match parse(json.as_bytes()) {
        Ok(state) => Ok(state),
        // serde's message may quote the input, which holds private keys: keep only the position.
        Err(reason) => {
            Err(Failure::invalid_secret("keyState", &format!("not valid key state JSON ({})", strip_quoted(&reason))))
        }
    }
}

pub fn generate() -> PersistState {
    PersistState::default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBadFormat {
    Error,
    Overwrite,
}

/// Loads the key file at `path`, creating it (and its directory) with fresh keys when missing.
/// An unparsable file is an error and stays untouched unless `on_bad_format` is `Overwrite`, in
/// which case the old bytes are kept beside it as `<name>.invalid` before new keys are written.
pub fn load_or_create(path: &Path, on_bad_format: OnBadFormat) -> Result<PersistState> {
    let shown = path.display();
    match std::fs::read(path) {
        Ok(bytes) => match parse(&bytes) {
            Ok(state) => {
                keep_private(path)?;
                Ok(state)
            }
            Err(reason) => match on_bad_format {
                OnBadFormat::Error => Err(Failure::new(
                    Code::KeyFile,
                    KEY_FILE,
                    format!(
                        "{shown} is not a valid key file ({}); it was left untouched. \
                         Fix or move it, or pass overwriteBadKeyFile to replace it with new keys",
                        strip_quoted(&reason)
                    ),
                )),
                OnBadFormat::Overwrite => {
                    let backup = keep_backup(path, &bytes)?;
                    let state = generate();
                    write_atomically(path, &state)?;
                    tracing::warn!(key_file = %shown, backup = %backup.display(), "replaced an invalid key file with new keys");
                    Ok(state)
                }
            },
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let state = generate();
            create_new(path, &state)?;
            Ok(state)
        }
        Err(e) => Err(Failure::new(Code::KeyFile, KEY_FILE, format!("could not read {shown}: {e}"))),
    }
}

/// A key file others can read gives away the node's identity: make it owner-only (0600), as
/// `ssh` insists, and say so.
#[cfg(unix)]
fn keep_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let mode = std::fs::metadata(path)
        .map_err(|e| Failure::new(Code::KeyFile, KEY_FILE, format!("could not read {shown}: {e}")))?
        .permissions()
        .mode();
    if mode & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        Failure::new(
            Code::KeyFile,
            KEY_FILE,
            format!("{shown} can be read by others (mode {:o}) and could not be made private: {e}", mode & 0o777),
        )
    })?;
    tracing::warn!(key_file = %shown, was = format!("{:o}", mode & 0o777), "key file could be read by others; made it private (0600)");
    Ok(())
}

#[cfg(not(unix))]
fn keep_private(_: &Path) -> Result<()> {
    Ok(())
}

fn ensure_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| {
            Failure::new(Code::KeyFile, KEY_FILE, format!("could not create its directory {}: {e}", dir.display()))
        }),
        _ => Ok(()),
    }
}

#[cfg(unix)]
fn private_options() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    options
}

#[cfg(not(unix))]
fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    options
}

/// Creates the file only if nobody else did in the meantime; never truncates an existing one.
fn create_new(path: &Path, state: &PersistState) -> Result<()> {
    ensure_parent(path)?;
    let shown = path.display();
    let mut file = private_options()
        .create_new(true)
        .open(path)
        .map_err(|e| Failure::new(Code::KeyFile, KEY_FILE, format!("could not create {shown}: {e}")))?;
    file.write_all(to_json(state).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure::new(Code::KeyFile, KEY_FILE, format!("could not write {shown}: {e}")))
}

/// Keeps `bytes` (which may hold private keys) in a new private file beside `path`:
/// `<name>.invalid`, or `<name>.invalid.N` when earlier backups exist. Never replaces a file.
fn keep_backup(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let shown = path.display();
    for attempt in 0..1000u32 {
        let suffix = if attempt == 0 { ".invalid".to_owned() } else { format!(".invalid.{attempt}") };
        let backup = sibling(path, &suffix);
        let written = private_options().create_new(true).open(&backup).and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        });
        match written {
            Ok(()) => return Ok(backup),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Failure::new(
                    Code::KeyFile,
                    KEY_FILE,
                    format!("could not back up {shown} to {}: {e}", backup.display()),
                ));
            }
        }
    }
    Err(Failure::new(
        Code::KeyFile,
        KEY_FILE,
        format!("could not back up {shown}: 1000 earlier backups exist beside it"),
    ))
}

/// Writes to a private temporary file beside `path`, then renames it over `path`.
fn write_atomically(path: &Path, state: &PersistState) -> Result<()> {
    ensure_parent(path)?;
    let shown = path.display();
    let temp = sibling(path, &format!(".tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = private_options().create(true).truncate(true).open(&temp)?;
        file.write_all(to_json(state).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        Failure::new(Code::KeyFile, KEY_FILE, format!("could not write {shown}: {e}"))
    })
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// serde_json error messages can quote fragments of the input; drop anything in quotes or
/// backticks so key material never reaches a message.
fn strip_quoted(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut in_quote: Option<char> = None;
    for c in reason.chars() {
        match (in_quote, c) {
            (None, '"' | '`') => {
                in_quote = Some(c);
                out.push('…');
            }
            (Some(q), c) if c == q => in_quote = None,
            (Some(_), _) => {}
            (None, c) => out.push(c),
        }
    }
    out
}

/// Public halves of a key state, safe to show.
pub struct PublicKeys {
    pub machine_key: String,
    pub node_key: String,
    pub network_lock_key: String,
}

pub fn public_keys(state: &PersistState) -> PublicKeys {
    PublicKeys {
        machine_key: state.machine_key.import().public.to_string(),
        node_key: state.node_key.import().public.to_string(),
        network_lock_key: state.network_lock_key.import().public.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory, removed with everything in it when dropped.
    struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ts-native-keys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn assert_private(path: &Path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} should be private", path.display());
        }
    }

    #[test]
    fn missing_file_is_created_private() {
        let dir = temp_dir("create");
        let path = dir.join("nested").join("keys.json");
        let state = load_or_create(&path, OnBadFormat::Error).unwrap();
        assert_private(&path);
        let again = load_or_create(&path, OnBadFormat::Error).unwrap();
        assert_eq!(public_keys(&state).node_key, public_keys(&again).node_key);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("loose-mode");
        let path = dir.join("keys.json");
        let state = load_or_create(&path, OnBadFormat::Error).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let again = load_or_create(&path, OnBadFormat::Error).unwrap();
        assert_eq!(public_keys(&state).node_key, public_keys(&again).node_key);
        assert_private(&path);
    }

    #[test]
    fn corrupt_file_is_left_untouched() {
        let dir = temp_dir("corrupt");
        let path = dir.join("keys.json");
        let secretish = br#"{"key_state": "privkey:0123 not json"#;
        std::fs::write(&path, secretish).unwrap();
        let failure = match load_or_create(&path, OnBadFormat::Error) {
            Err(failure) => failure,
            Ok(_) => panic!("a corrupt key file must not load"),
        };
        assert_eq!(failure.code, Code::KeyFile);
        assert!(failure.detail.contains("left untouched"), "{failure}");
        assert!(!failure.detail.contains("privkey:0123"), "{failure}");
        assert_eq!(std::fs::read(&path).unwrap(), secretish);
    }

    #[test]
    fn overwrite_keeps_a_private_backup() {
        let dir = temp_dir("overwrite");
        let path = dir.join("keys.json");
        std::fs::write(&path, b"garbage").unwrap();
        load_or_create(&path, OnBadFormat::Overwrite).unwrap();
        let backup = dir.join("keys.json.invalid");
        assert_eq!(std::fs::read(&backup).unwrap(), b"garbage");
        assert_private(&backup);
        assert!(parse(&std::fs::read(&path).unwrap()).is_ok());
    }

    #[test]
    fn overwrite_never_replaces_an_earlier_backup() {
        let dir = temp_dir("overwrite-twice");
        let path = dir.join("keys.json");
        std::fs::write(&path, b"first garbage").unwrap();
        load_or_create(&path, OnBadFormat::Overwrite).unwrap();
        std::fs::write(&path, b"second garbage").unwrap();
        load_or_create(&path, OnBadFormat::Overwrite).unwrap();
        assert_eq!(std::fs::read(dir.join("keys.json.invalid")).unwrap(), b"first garbage");
        assert_eq!(std::fs::read(dir.join("keys.json.invalid.1")).unwrap(), b"second garbage");
    }

    #[test]
    fn file_from_the_previous_release_keeps_its_keys() {
        let fixture = include_str!("../test/fixtures/key-file-0.5.json");
        let expected: serde_json::Value =
            serde_json::from_str(include_str!("../test/fixtures/key-file-0.5.public.json")).unwrap();
        let keys = public_keys(&from_json(fixture).unwrap());
        assert_eq!(keys.node_key, expected["nodeKey"]);
        assert_eq!(keys.machine_key, expected["machineKey"]);
        assert_eq!(keys.network_lock_key, expected["networkLockKey"]);
    }

    #[test]
    fn pre_0_5_file_is_named_and_left_untouched() {
        let dir = temp_dir("legacy");
        let path = dir.join("keys.json");
        let legacy = br#"{"key_state":{"node_keys":{"private":"privkey:00"},"machine_keys":{}}}"#;
        std::fs::write(&path, legacy).unwrap();
        let failure = match load_or_create(&path, OnBadFormat::Error) {
            Err(failure) => failure,
            Ok(_) => panic!("a pre-0.5 key file must not load"),
        };
        assert!(failure.detail.contains("before 0.5"), "{failure}");
        assert_eq!(std::fs::read(&path).unwrap(), legacy);
    }

    #[test]
    fn json_round_trips() {
        let state = generate();
        let json = to_json(&state);
        let back = from_json(&json).unwrap();
        assert_eq!(public_keys(&state).machine_key, public_keys(&back).machine_key);
        assert_eq!(to_json(&back), json);
    }

    #[test]
    fn bad_json_does_not_echo_input() {
        let failure = match from_json(r#"{"key_state":{"node_key":"privkey:deadbeef"}}"#) {
            Err(failure) => failure,
            Ok(_) => panic!("incomplete key state must not parse"),
        };
        assert_eq!(failure.code, Code::InvalidArgument);
        assert!(!failure.detail.contains("deadbeef"), "{failure}");
    }
}
