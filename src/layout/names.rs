//! App and version names as path components of ToolJet's legacy layout.
//!
//! ToolJet writes `<App Name>/<versionName>.json` with the raw names. Any name that is a single,
//! ordinary path component is therefore kept verbatim, byte for byte, so that ToolJet and this
//! operator read and write the same folders. Names that are not (separators, `.`/`..`, control
//! characters, a leading dot, over-long names, Windows device names) are **refused**, never
//! encoded: an encoded folder would not be found by ToolJet, which reads the folder named after
//! `gitAppName`, and ToolJet would name a pulled app after the encoded folder.

/// Repository path of the meta file ToolJet keeps for all synced apps.
pub const META_PATH: &str = ".meta/meta.json";

/// Longest accepted path component in bytes: `NAME_MAX` of ext4, XFS, btrfs and APFS, and the
/// UTF-16 limit of NTFS is never smaller for the same text.
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Suffix ToolJet gives to the version file.
pub const VERSION_FILE_SUFFIX: &str = ".json";

/// Which of the two untrusted names a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// The app name, used as the folder name.
    App,
    /// The version name, used as the file name `<version>.json`.
    Version,
}

impl NameKind {
    fn noun(self) -> &'static str {
        match self {
            NameKind::App => "app name",
            NameKind::Version => "version name",
        }
    }

    fn fix(self) -> &'static str {
        match self {
            NameKind::App => "rename the app in ToolJet",
            NameKind::Version => "rename the version in ToolJet",
        }
    }

    /// Longest accepted name of this kind, in bytes.
    pub fn max_bytes(self) -> usize {
        match self {
            NameKind::App => MAX_COMPONENT_BYTES,
            NameKind::Version => MAX_COMPONENT_BYTES - VERSION_FILE_SUFFIX.len(),
        }
    }
}

/// Why a name cannot be used as a path component; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the {} is empty; {}", .kind.noun(), .kind.fix())]
    Empty {
        /// App or version name.
        kind: NameKind,
    },
    /// The name is longer than the file systems git checks out to accept.
    #[error(
        "the {} {:?} is {len} bytes long, more than the {max} bytes a file or folder name may have; {} to something shorter",
        .kind.noun(), .name, .kind.fix()
    )]
    TooLong {
        /// App or version name.
        kind: NameKind,
        /// The refused name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The name starts with a dot (`.`, `..`, `.git`, `.meta`, hidden files).
    #[error(
        "the {} {:?} starts with '.', which git and ToolJet's layout reserve ('.', '..', '.git', '.meta'); {} so it does not start with a dot",
        .kind.noun(), .name, .kind.fix()
    )]
    LeadingDot {
        /// App or version name.
        kind: NameKind,
        /// The refused name.
        name: String,
    },
    /// The name contains a path separator and would become nested folders.
    #[error(
        "the {} {:?} contains the path separator {:?}, which would place files outside the app's folder; {} without '/' or '\\'",
        .kind.noun(), .name, .separator, .kind.fix()
    )]
    Separator {
        /// App or version name.
        kind: NameKind,
        /// The refused name.
        name: String,
        /// The separator found.
        separator: char,
    },
    /// The name contains NUL or another control character.
    #[error(
        "the {} {:?} contains the control character U+{:04X}, which cannot appear in a file name; {}",
        .kind.noun(), .name, u32::from(*.character), .kind.fix()
    )]
    ControlCharacter {
        /// App or version name.
        kind: NameKind,
        /// The refused name.
        name: String,
        /// The control character found.
        character: char,
    },
    /// The name is a Windows device name or git's NTFS alias of `.git`, which checkouts on
    /// Windows cannot create or treat specially.
    #[error(
        "the {} {:?} is reserved on Windows or by git ({:?}), so checkouts of the repository would fail; {}",
        .kind.noun(), .name, .reserved, .kind.fix()
    )]
    Reserved {
        /// App or version name.
        kind: NameKind,
        /// The refused name.
        name: String,
        /// The reserved word it matches.
        reserved: String,
    },
}

/// Windows device names: a path component whose part before the first dot (trailing spaces
/// ignored) is one of these opens the device instead of a file.
const WINDOWS_DEVICES: &[&str] = &[
    "con", "prn", "aux", "nul", "conin$", "conout$", "com0", "com1", "com2", "com3", "com4",
    "com5", "com6", "com7", "com8", "com9", "com¹", "com²", "com³", "lpt0", "lpt1", "lpt2", "lpt3",
    "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9", "lpt¹", "lpt²", "lpt³",
];

/// Checks that `name` can be used verbatim as a single path component of the given kind.
pub fn validate_name(kind: NameKind, name: &str) -> Result<(), NameError> {
    let owned = || name.to_owned();
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if let Some(separator) = name.chars().find(|c| *c == '/' || *c == '\\') {
        return Err(NameError::Separator {
            kind,
            name: owned(),
            separator,
        });
    }
    if let Some(character) = name.chars().find(|c| c.is_control()) {
        return Err(NameError::ControlCharacter {
            kind,
            name: owned(),
            character,
        });
    }
    if name.starts_with('.') {
        return Err(NameError::LeadingDot {
            kind,
            name: owned(),
        });
    }
    let max = kind.max_bytes();
    if name.len() > max {
        return Err(NameError::TooLong {
            kind,
            name: owned(),
            len: name.len(),
            max,
        });
    }
    let component = match kind {
        NameKind::App => name.to_owned(),
        NameKind::Version => format!("{name}{VERSION_FILE_SUFFIX}"),
    };
    if let Some(reserved) = reserved_word(&component) {
        return Err(NameError::Reserved {
            kind,
            name: owned(),
            reserved,
        });
    }
    Ok(())
}

fn reserved_word(component: &str) -> Option<String> {
    let lower = component.to_lowercase();
    let stem = lower
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_end_matches(' ');
    if WINDOWS_DEVICES.contains(&stem) {
        return Some(stem.to_owned());
    }
    // git refuses the NTFS 8.3 short name of `.git` (core.protectNTFS, on by default).
    if collision_key(component) == "git~1" {
        return Some("git~1".to_owned());
    }
    None
}

/// The folder of an app: its name, verbatim, once validated.
pub fn app_folder(app_name: &str) -> Result<String, NameError> {
    validate_name(NameKind::App, app_name)?;
    Ok(app_name.to_owned())
}

/// The file name of a version inside its app's folder: `<version>.json`.
pub fn version_file_name(version_name: &str) -> Result<String, NameError> {
    validate_name(NameKind::Version, version_name)?;
    Ok(format!("{version_name}{VERSION_FILE_SUFFIX}"))
}

/// Repo-relative path (with `/`) of an app's version file, as ToolJet writes it.
pub fn app_file_path(app_name: &str, version_name: &str) -> Result<String, NameError> {
    Ok(format!(
        "{}/{}",
        app_folder(app_name)?,
        version_file_name(version_name)?
    ))
}

/// Folds a name to the form under which case-insensitive (macOS, Windows) or normalizing
/// checkouts would merge two folders, so that "Sales" and "sales" count as one folder.
///
/// Lowercases (Unicode), drops the code points HFS+ ignores, and drops the trailing dots and
/// spaces Windows strips. Unicode normalization (NFC/NFD) is not applied.
pub fn collision_key(name: &str) -> String {
    let folded: String = name
        .chars()
        .filter(|c| !is_hfs_ignorable(*c))
        .flat_map(char::to_lowercase)
        .collect();
    folded.trim_end_matches(['.', ' ']).to_owned()
}

fn is_hfs_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{206A}'..='\u{206F}' | '\u{FEFF}'
    )
}

/// Checks a path read from a git tree listing (inside an app folder) before the plan copies
/// or deletes it: relative, `/`-separated, no empty, `.` or `..` components, no `\` or NUL.
pub(crate) fn is_safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|component| {
            !component.is_empty()
                && component != "."
                && component != ".."
                && !component.contains(['\\', '\0'])
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_names_stay_verbatim() {
        for name in [
            "Sales Dashboard",
            "Inventory",
            "Q1: revenue?",
            "Zürich Büro",
            "销售",
            "a.b",
            "v1.0.",
            " leading space",
            "trailing space ",
            "100% <fun> | \"quoted\" *",
            "con-artist",
            "console",
            "x..",
        ] {
            assert_eq!(app_folder(name).unwrap(), name);
        }
        assert_eq!(
            app_file_path("Sales Dashboard", "v3").unwrap(),
            "Sales Dashboard/v3.json"
        );
        assert_eq!(version_file_name("v1.2").unwrap(), "v1.2.json");
    }

    #[test]
    fn dangerous_names_are_refused() {
        type Check = fn(&NameError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, NameError::Empty { .. })),
            (".", |e| matches!(e, NameError::LeadingDot { .. })),
            ("..", |e| matches!(e, NameError::LeadingDot { .. })),
            (".git", |e| matches!(e, NameError::LeadingDot { .. })),
            (".meta", |e| matches!(e, NameError::LeadingDot { .. })),
            (".hidden", |e| matches!(e, NameError::LeadingDot { .. })),
            ("a/b", |e| {
                matches!(e, NameError::Separator { separator: '/', .. })
            }),
            ("../x", |e| matches!(e, NameError::Separator { .. })),
            ("/abs", |e| matches!(e, NameError::Separator { .. })),
            ("a\\b", |e| {
                matches!(
                    e,
                    NameError::Separator {
                        separator: '\\',
                        ..
                    }
                )
            }),
            ("..\\x", |e| matches!(e, NameError::Separator { .. })),
            ("a\0b", |e| {
                matches!(
                    e,
                    NameError::ControlCharacter {
                        character: '\0',
                        ..
                    }
                )
            }),
            ("a\nb", |e| matches!(e, NameError::ControlCharacter { .. })),
            ("a\u{7f}", |e| {
                matches!(e, NameError::ControlCharacter { .. })
            }),
            ("a\u{85}", |e| {
                matches!(e, NameError::ControlCharacter { .. })
            }),
            ("CON", |e| matches!(e, NameError::Reserved { .. })),
            ("nul.txt", |e| matches!(e, NameError::Reserved { .. })),
            ("Com1 ", |e| matches!(e, NameError::Reserved { .. })),
            ("LPT9", |e| matches!(e, NameError::Reserved { .. })),
            ("GIT~1", |e| matches!(e, NameError::Reserved { .. })),
            ("git~1.", |e| matches!(e, NameError::Reserved { .. })),
        ];
        for (name, expected) in cases {
            let err = app_folder(name).unwrap_err();
            assert!(expected(&err), "{name:?}: {err:?}");
            let message = err.to_string();
            assert!(message.contains("rename the app"), "{message}");
            assert!(
                !message.contains('\0') && !message.contains('\n'),
                "{message}"
            );
        }
    }

    #[test]
    fn length_limits_are_in_bytes() {
        let max_app = "a".repeat(255);
        assert!(app_folder(&max_app).is_ok());
        let err = app_folder(&"a".repeat(256)).unwrap_err();
        assert!(matches!(
            err,
            NameError::TooLong {
                len: 256,
                max: 255,
                ..
            }
        ));
        // 'é' is two bytes: 128 of them are 256 bytes.
        assert!(app_folder(&"é".repeat(128)).is_err());
        assert!(version_file_name(&"v".repeat(250)).is_ok());
        let err = version_file_name(&"v".repeat(251)).unwrap_err();
        assert!(err.to_string().contains("rename the version"));
        assert!(matches!(err, NameError::TooLong { max: 250, .. }));
    }

    #[test]
    fn version_names_are_checked_as_file_names() {
        assert!(version_file_name("con").is_err());
        assert!(version_file_name("v1/../../x").is_err());
        assert!(version_file_name(".v1").is_err());
        assert!(version_file_name("v 1").is_ok());
    }

    #[test]
    fn collision_keys_merge_what_checkouts_merge() {
        assert_eq!(collision_key("Sales"), collision_key("sales"));
        assert_eq!(collision_key("SALES"), collision_key("sales. "));
        assert_eq!(collision_key("ÄRGER"), collision_key("ärger"));
        assert_eq!(collision_key("sa\u{200c}les"), collision_key("sales"));
        assert_ne!(collision_key("sales"), collision_key("sales2"));
    }

    #[test]
    fn relative_listing_paths() {
        assert!(is_safe_relative_path("v1.json"));
        assert!(is_safe_relative_path("assets/logo.png"));
        for bad in ["", "/x", "x/", "a//b", "../x", "a/./b", "a\\b", "a\0"] {
            assert!(!is_safe_relative_path(bad), "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Any name is refused or becomes one safe component equal to the name itself.
        #[test]
        fn any_app_name_is_refused_or_one_safe_component(name in any::<String>()) {
            check_component(&name)?;
        }

        /// Same with names built from the characters that matter most.
        #[test]
        fn tricky_app_names_are_refused_or_safe(
            name in proptest::string::string_regex("[./\\\\\\x00\\n a-zA-Z~é\u{200c}]{0,12}").unwrap()
        ) {
            check_component(&name)?;
        }

        #[test]
        fn any_version_name_is_refused_or_one_safe_file(name in any::<String>()) {
            if let Ok(file) = version_file_name(&name) {
                prop_assert_eq!(&file, &format!("{name}.json"));
                prop_assert!(file.len() <= MAX_COMPONENT_BYTES);
                prop_assert!(is_safe_relative_path(&file));
                prop_assert!(!file.contains('/'));
                let path = app_file_path("App", &name).unwrap();
                prop_assert_eq!(path.split('/').collect::<Vec<_>>(), vec!["App", file.as_str()]);
            }
        }
    }

    fn check_component(name: &str) -> Result<(), TestCaseError> {
        match app_folder(name) {
            Ok(folder) => {
                // Round-trips: the folder is the name, byte for byte.
                prop_assert_eq!(&folder, name);
                prop_assert!(!folder.is_empty() && folder.len() <= MAX_COMPONENT_BYTES);
                prop_assert!(!folder.contains(['/', '\\']));
                prop_assert!(!folder.chars().any(char::is_control));
                prop_assert!(!folder.starts_with('.'));
                prop_assert!(is_safe_relative_path(&folder));
                // Stays inside: joined below a root, it has exactly one more component.
                let path = format!("root/{folder}/v1.json");
                prop_assert_eq!(path.split('/').count(), 3);
            }
            Err(err) => {
                let message = err.to_string();
                prop_assert!(message.contains("rename the app"));
                prop_assert!(!message.chars().any(char::is_control));
            }
        }
        Ok(())
    }
}
