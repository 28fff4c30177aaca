//! ToolJet version strings and the import compatibility rule.
//!
//! ToolJet refuses to import an export whose `tooljet_version` is greater than its own; it
//! compares the numeric `x.y.z` before the first `-` (`server/src/helpers/utils.helper.ts`,
//! `isVersionGreaterThan`), so `3.5.11-cloud-lts` is `3.5.11`. The client applies the same rule
//! before sending anything.

/// Parses the numeric part of a ToolJet version: `"3.16.0-ee-lts"` -> `[3, 16, 0]`.
/// Missing components count as 0; a leading `v` is tolerated. `None` if not numeric.
pub fn parse(version: &str) -> Option<[u64; 3]> {
    let core = version.trim();
    let core = core.strip_prefix(['v', 'V']).unwrap_or(core);
    let core = core.split('-').next().unwrap_or_default();
    if core.is_empty() {
        return None;
    }
    let mut out = [0u64; 3];
    for (i, part) in core.split('.').enumerate() {
        if i >= 3 {
            // ToolJet compares three components; further ones are ignored.
            break;
        }
        out[i] = part.parse().ok()?;
    }
    Some(out)
}

/// Longest version string accepted from ToolJet; real ones look like `3.16.0-ee-lts`. It ends
/// up in status and messages, so a server cannot make those arbitrarily long.
pub const MAX_LEN: usize = 64;

/// Whether `version` is a version number of reasonable length.
pub fn is_usable(version: &str) -> bool {
    version.len() <= MAX_LEN && parse(version).is_some()
}

/// Whether an export made by `export` is too new for a server running `server`.
/// `None` when either string is not a version.
pub fn is_newer(export: &str, server: &str) -> Option<bool> {
    Some(parse(export)? > parse(server)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(parse("3.16.0"), Some([3, 16, 0]));
        assert_eq!(parse("3.5.11-cloud-lts"), Some([3, 5, 11]));
        assert_eq!(parse("v2.50"), Some([2, 50, 0]));
        assert_eq!(parse("3.16.0.1"), Some([3, 16, 0]));
        assert_eq!(parse(""), None);
        assert_eq!(parse("latest"), None);
        assert_eq!(parse("3.x.0"), None);
    }

    #[test]
    fn server_provided_oddities_never_panic() {
        assert_eq!(parse("99999999999999999999999.1.1"), None);
        assert_eq!(parse("18446744073709551615.0.0"), Some([u64::MAX, 0, 0]));
        assert_eq!(parse("1.2.3.4.5.6.7.8.9"), Some([1, 2, 3]));
        assert_eq!(parse("é.1"), None);
        assert_eq!(parse("-"), None);
        assert_eq!(parse("..."), None);
        assert!(is_usable("3.16.0-ee-lts"));
        assert!(!is_usable(&format!("3.16.0-{}", "x".repeat(MAX_LEN))));
        assert!(!is_usable("latest"));
    }

    #[test]
    fn compares_numerically_not_lexically() {
        assert_eq!(is_newer("3.10.0", "3.9.9"), Some(true));
        assert_eq!(is_newer("3.9.9", "3.10.0"), Some(false));
        assert_eq!(is_newer("3.16.0-ee-lts", "3.16.0"), Some(false));
        assert_eq!(is_newer("3.16.1-ee-lts", "3.16.0-cloud"), Some(true));
        assert_eq!(is_newer("4.0.0", "3.99.99"), Some(true));
        assert_eq!(is_newer("2.0", "2.0.0"), Some(false));
        assert_eq!(is_newer("x", "2.0.0"), None);
    }
}
