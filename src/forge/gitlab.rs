//! GitLab's merge requests API (docs.gitlab.com/api/merge_requests/): the paths, bodies and
//! answers. The project is addressed by its URL-encoded path (`group%2Fsub%2Fname`).
//!
//! `state` is `opened`, `closed`, `merged` or `locked` (a transitional state while a merge is
//! under way: still open). The merge commit is `merge_commit_sha`, or `squash_commit_sha`
//! for a squash without a merge commit, or the head `sha` for a fast-forward merge.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{Listed, PrState, PullRequest};

#[derive(Deserialize)]
struct Mr {
    iid: u64,
    web_url: String,
    state: String,
    source_branch: String,
    target_branch: String,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    #[serde(default)]
    squash_commit_sha: Option<String>,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    source_project_id: Option<u64>,
    #[serde(default)]
    target_project_id: Option<u64>,
}

/// GitLab's `state` as a [`PrState`].
pub(crate) fn state(s: &str) -> Option<PrState> {
    match s {
        "opened" | "locked" => Some(PrState::Open),
        "merged" => Some(PrState::Merged),
        "closed" => Some(PrState::Closed),
        _ => None,
    }
}

fn convert(m: Mr) -> Result<Listed, String> {
    let st = state(&m.state).ok_or_else(|| format!("unknown merge request state {:?}", m.state))?;
    let merge_commit = if st == PrState::Merged {
        m.merge_commit_sha.or(m.squash_commit_sha).or(m.sha)
    } else {
        None
    };
    Ok(Listed {
        same_repo: match (m.source_project_id, m.target_project_id) {
            (Some(s), Some(t)) => s == t,
            _ => true,
        },
        pr: PullRequest {
            number: m.iid,
            url: m.web_url,
            state: st,
            head_branch: m.source_branch,
            base_branch: m.target_branch,
            merge_commit,
        },
    })
}

fn project_segments(repo: &str) -> Vec<String> {
    vec!["projects".into(), repo.into(), "merge_requests".into()]
}

/// `GET /projects/:id/merge_requests?state=opened&source_branch=&target_branch=`.
pub(crate) fn list(
    repo: &str,
    head: &str,
    base: &str,
    page: u32,
    per_page: u32,
) -> (Vec<String>, Vec<(&'static str, String)>) {
    (
        project_segments(repo),
        vec![
            ("state", "opened".into()),
            ("source_branch", head.into()),
            ("target_branch", base.into()),
            ("per_page", per_page.to_string()),
            ("page", page.to_string()),
        ],
    )
}

/// `/projects/:id/merge_requests/:iid`.
pub(crate) fn one(repo: &str, iid: u64) -> Vec<String> {
    let mut s = project_segments(repo);
    s.push(iid.to_string());
    s
}

/// `POST /projects/:id/merge_requests`.
pub(crate) fn open(
    repo: &str,
    head: &str,
    base: &str,
    title: &str,
    body: &str,
) -> (Vec<String>, Value) {
    (
        project_segments(repo),
        json!({"source_branch": head, "target_branch": base, "title": title, "description": body}),
    )
}

/// `PUT /projects/:id/merge_requests/:iid`.
pub(crate) fn update(title: &str, body: &str) -> Value {
    json!({"title": title, "description": body})
}

/// The iid in GitLab's 409 "Another open merge request already exists for this source
/// branch: !<iid>".
pub(crate) fn existing_iid(message: &str) -> Option<u64> {
    let at = message.rfind('!')?;
    let digits: String = message
        .get(at + 1..)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

pub(crate) fn parse_one(body: &[u8]) -> Result<PullRequest, String> {
    let m: Mr = serde_json::from_slice(body)
        .map_err(|e| super::http::serde_detail("a merge request", &e))?;
    convert(m).map(|l| l.pr)
}

pub(crate) fn parse_list(body: &[u8]) -> Result<Vec<Listed>, String> {
    let ms: Vec<Mr> = serde_json::from_slice(body)
        .map_err(|e| super::http::serde_detail("a list of merge requests", &e))?;
    ms.into_iter().map(convert).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        assert_eq!(state("opened"), Some(PrState::Open));
        assert_eq!(state("locked"), Some(PrState::Open));
        assert_eq!(state("merged"), Some(PrState::Merged));
        assert_eq!(state("closed"), Some(PrState::Closed));
        assert_eq!(state("all"), None);
    }

    #[test]
    fn merge_commits() {
        let mr = |extra: &str| {
            format!(
                r#"{{"iid":4,"web_url":"https://gl/g/r/-/merge_requests/4","state":"merged","source_branch":"f","target_branch":"main","sha":"head"{extra}}}"#
            )
        };
        assert_eq!(
            parse_one(mr(r#","merge_commit_sha":"m""#).as_bytes())
                .unwrap()
                .merge_commit
                .as_deref(),
            Some("m")
        );
        assert_eq!(
            parse_one(mr(r#","merge_commit_sha":null,"squash_commit_sha":"s""#).as_bytes())
                .unwrap()
                .merge_commit
                .as_deref(),
            Some("s")
        );
        assert_eq!(
            parse_one(mr("").as_bytes())
                .unwrap()
                .merge_commit
                .as_deref(),
            Some("head"),
            "fast-forward"
        );
        let open = mr("").replace("merged", "opened");
        assert_eq!(parse_one(open.as_bytes()).unwrap().merge_commit, None);
    }

    #[test]
    fn iid_of_the_existing_merge_request() {
        assert_eq!(
            existing_iid("Another open merge request already exists for this source branch: !12"),
            Some(12)
        );
        assert_eq!(existing_iid("already exists"), None);
    }
}
