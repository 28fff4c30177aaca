//! GitHub's pulls API (docs.github.com/rest/pulls/pulls): the paths, bodies and answers.
//!
//! A merged pull request is `state: closed` with `merged_at` set (`merged: true` in the
//! single-PR shape, absent from listings); `merge_commit_sha` of an open PR is GitHub's test
//! merge, so it is reported only once merged.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{owner_name, Listed, PrState, PullRequest};

#[derive(Deserialize)]
struct Pr {
    number: u64,
    html_url: String,
    state: String,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merged_at: Option<String>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    head: Branch,
    base: Branch,
}

#[derive(Deserialize)]
pub(crate) struct Branch {
    #[serde(rename = "ref")]
    pub name: String,
    #[serde(default)]
    pub repo: Option<Repo>,
}

#[derive(Deserialize)]
pub(crate) struct Repo {
    #[serde(default)]
    pub full_name: Option<String>,
}

/// Whether head and base are in one repository; a missing head repository (a deleted fork)
/// is not.
pub(crate) fn same_repo(head: &Branch, base: &Branch) -> bool {
    match (
        head.repo.as_ref().and_then(|r| r.full_name.as_deref()),
        base.repo.as_ref().and_then(|r| r.full_name.as_deref()),
    ) {
        (Some(h), Some(b)) => h.eq_ignore_ascii_case(b),
        (None, _) if head.repo.is_none() => false,
        _ => true,
    }
}

/// GitHub's `state` (+ `merged`/`merged_at`) as a [`PrState`].
pub(crate) fn state(state: &str, merged: Option<bool>, merged_at: Option<&str>) -> Option<PrState> {
    match state {
        "open" => Some(PrState::Open),
        "closed" if merged == Some(true) || merged_at.is_some_and(|m| !m.is_empty()) => {
            Some(PrState::Merged)
        }
        "closed" => Some(PrState::Closed),
        _ => None,
    }
}

fn convert(p: Pr) -> Result<Listed, String> {
    let st = state(&p.state, p.merged, p.merged_at.as_deref())
        .ok_or_else(|| format!("unknown pull request state {:?}", p.state))?;
    Ok(Listed {
        same_repo: same_repo(&p.head, &p.base),
        pr: PullRequest {
            number: p.number,
            url: p.html_url,
            state: st,
            head_branch: p.head.name,
            base_branch: p.base.name,
            merge_commit: p.merge_commit_sha.filter(|_| st == PrState::Merged),
        },
    })
}

fn repo_segments(repo: &str) -> Vec<String> {
    let (owner, name) = owner_name(repo);
    vec!["repos".into(), owner.into(), name.into(), "pulls".into()]
}

/// `GET /repos/{owner}/{repo}/pulls?state=open&head=owner:head&base=base`.
pub(crate) fn list(
    repo: &str,
    head: &str,
    base: &str,
    page: u32,
    per_page: u32,
) -> (Vec<String>, Vec<(&'static str, String)>) {
    let (owner, _) = owner_name(repo);
    (
        repo_segments(repo),
        vec![
            ("state", "open".into()),
            ("head", format!("{owner}:{head}")),
            ("base", base.into()),
            ("per_page", per_page.to_string()),
            ("page", page.to_string()),
        ],
    )
}

/// `/repos/{owner}/{repo}/pulls/{number}`.
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
        json!({"title": title, "head": head, "base": base, "body": body}),
    )
}

/// `PATCH /repos/{owner}/{repo}/pulls/{number}`.
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
        assert_eq!(state("open", None, None), Some(PrState::Open));
        assert_eq!(
            state("closed", None, Some("2026-01-01T00:00:00Z")),
            Some(PrState::Merged)
        );
        assert_eq!(state("closed", Some(true), None), Some(PrState::Merged));
        assert_eq!(state("closed", Some(false), None), Some(PrState::Closed));
        assert_eq!(state("closed", None, None), Some(PrState::Closed));
        assert_eq!(state("draft", None, None), None);
    }

    #[test]
    fn merge_commit_only_once_merged() {
        let open = br#"{"number":3,"html_url":"https://github.com/a/r/pull/3","state":"open","merged_at":null,"merge_commit_sha":"abc","head":{"ref":"f","repo":{"full_name":"a/r"}},"base":{"ref":"main","repo":{"full_name":"a/r"}}}"#;
        let pr = parse_one(open).unwrap();
        assert_eq!(pr.state, PrState::Open);
        assert_eq!(pr.merge_commit, None);
        assert_eq!(pr.url, "https://github.com/a/r/pull/3");
        let merged = br#"{"number":3,"html_url":"u","state":"closed","merged":true,"merged_at":"2026-01-01T00:00:00Z","merge_commit_sha":"abc","head":{"ref":"f","repo":null},"base":{"ref":"main","repo":{"full_name":"a/r"}}}"#;
        let pr = parse_one(merged).unwrap();
        assert_eq!(pr.state, PrState::Merged);
        assert_eq!(pr.merge_commit.as_deref(), Some("abc"));
        let l = parse_list(&[b"[".as_slice(), merged, b"]"].concat()).unwrap();
        assert!(!l[0].same_repo, "a deleted fork's head is not ours");
    }
}
