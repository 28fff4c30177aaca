//! Gitea's (and Forgejo's) pulls API (the swagger's `repoCreatePullRequest`,
//! `repoListPullRequests`, `repoGetPullRequest`, `repoEditPullRequest`): the paths, bodies and
//! answers. The listing has no head/base filter, so open PRs are walked page by page and
//! matched here. A merged PR is `state: closed` with `merged: true`.

use serde::Deserialize;
use serde_json::{json, Value};

use super::github::{same_repo, Branch};
use super::{owner_name, Listed, PrState, PullRequest};

#[derive(Deserialize)]
struct Pr {
    number: u64,
    html_url: String,
    state: String,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    head: Branch,
    base: Branch,
}

/// Gitea's `state` + `merged` as a [`PrState`].
pub(crate) fn state(state: &str, merged: Option<bool>) -> Option<PrState> {
    match (state, merged) {
        ("open", _) => Some(PrState::Open),
        ("closed", Some(true)) => Some(PrState::Merged),
        ("closed", _) => Some(PrState::Closed),
        _ => None,
    }
}

fn convert(p: Pr) -> Result<Listed, String> {
    let st = state(&p.state, p.merged)
        .ok_or_else(|| format!("unknown pull request state {:?}", p.state))?;
    Ok(Listed {
        same_repo: same_repo(&p.head, &p.base),
        pr: PullRequest {
            number: p.number,
            url: p.html_url,
            state: st,
            head_branch: p.head.name,
            base_branch: p.base.name,
            merge_commit: p
                .merge_commit_sha
                .filter(|s| st == PrState::Merged && !s.is_empty()),
        },
    })
}

fn repo_segments(repo: &str) -> Vec<String> {
    let (owner, name) = owner_name(repo);
    vec!["repos".into(), owner.into(), name.into(), "pulls".into()]
}

/// `GET /repos/{owner}/{repo}/pulls?state=open&limit=&page=`.
pub(crate) fn list(
    repo: &str,
    page: u32,
    limit: u32,
) -> (Vec<String>, Vec<(&'static str, String)>) {
    (
        repo_segments(repo),
        vec![
            ("state", "open".into()),
            ("limit", limit.to_string()),
            ("page", page.to_string()),
        ],
    )
}

/// `/repos/{owner}/{repo}/pulls/{index}`.
pub(crate) fn one(repo: &str, number: u64) -> Vec<String> {
    let mut s = repo_segments(repo);
    s.push(number.to_string());
    s
}

/// `POST /repos/{owner}/{repo}/pulls`.
pub(crate) fn open(
    repo: &str,
    head: &str,
    base: &str,
    title: &str,
    body: &str,
) -> (Vec<String>, Value) {
    (
        repo_segments(repo),
        json!({"head": head, "base": base, "title": title, "body": body}),
    )
}

/// `PATCH /repos/{owner}/{repo}/pulls/{index}` (Gitea answers 201).
pub(crate) fn update(title: &str, body: &str) -> Value {
    json!({"title": title, "body": body})
}

pub(crate) fn parse_one(body: &[u8]) -> Result<PullRequest, String> {
    let p: Pr = serde_json::from_slice(body)
        .map_err(|e| super::http::serde_detail("a pull request", &e))?;
    convert(p).map(|l| l.pr)
}

pub(crate) fn parse_list(body: &[u8]) -> Result<Vec<Listed>, String> {
    let ps: Vec<Pr> = serde_json::from_slice(body)
        .map_err(|e| super::http::serde_detail("a list of pull requests", &e))?;
    ps.into_iter().map(convert).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        assert_eq!(state("open", Some(false)), Some(PrState::Open));
        assert_eq!(state("closed", Some(true)), Some(PrState::Merged));
        assert_eq!(state("closed", Some(false)), Some(PrState::Closed));
        assert_eq!(state("closed", None), Some(PrState::Closed));
        assert_eq!(state("weird", None), None);
    }

    #[test]
    fn parses_a_merged_pull() {
        let b = br#"{"number":2,"html_url":"https://gitea/o/r/pulls/2","state":"closed","merged":true,"merge_commit_sha":"abc","head":{"ref":"f","repo":{"full_name":"o/r"}},"base":{"ref":"main","repo":{"full_name":"o/r"}}}"#;
        let pr = parse_one(b).unwrap();
        assert_eq!(
            (pr.state, pr.merge_commit.as_deref(), pr.number),
            (PrState::Merged, Some("abc"), 2)
        );
    }
}
