//! Pull-request mode of a Push: changes go to a branch of the AppSync's own, started at the
//! base, and wait in one pull (merge) request, which later changes update by adding commits
//! (never forced). A request merged or closed makes the next change start a new branch
//! (`-2`, `-3`, ...). Every step is idempotent and derived from status and the remote, so a
//! pass killed between the push and the request finds the request (or opens it) next time.

use std::time::Duration;

use kube::ResourceExt;

use super::super::config_ref::ResolvedConfig;
use super::super::{Context, Failure, Problem};
use crate::api::{
    AppSync, AppSyncStatus, ForgeProvider, PullRequestSpec, PullRequestStatus, Reason,
};
use crate::forge::{default_api_base, ForgeClient, ForgeError, PrState, Provider, PullRequest};

/// Default prefix of pull-request branches.
pub const DEFAULT_PREFIX: &str = "tooljet-gitsync/";
/// Default title.
pub const DEFAULT_TITLE: &str = "ToolJet: {app} {version}";
/// Default description.
pub const DEFAULT_BODY: &str = "Exported from ToolJet by tooljet-gitsync-operator: app **{app}**, version **{version}**.\n\nMerging this request into `{base}` promotes it; Pull AppSyncs on `{base}` import it after the merge.";
/// Bound of each API call.
const API_TIMEOUT: Duration = Duration::from_secs(20);
/// Merged branches passed over in one pass, at most.
const MAX_BRANCH_STEPS: usize = 20;

/// Pull-request mode for one pass.
pub struct PrMode {
    /// The branch changes are committed to in this pass.
    pub branch: String,
    /// The AppSync's first branch (later ones add `-2`, `-3`, ...).
    first: String,
    /// The branch the request targets.
    pub base: String,
    client: ForgeClient,
    spec: PullRequestSpec,
    /// The request as last known (refreshed from the host when it was open).
    pub status: Option<PullRequestStatus>,
}

fn provider(p: ForgeProvider) -> Provider {
    match p {
        ForgeProvider::GitHub => Provider::GitHub,
        ForgeProvider::GitLab => Provider::GitLab,
        ForgeProvider::Gitea => Provider::Gitea,
    }
}

/// `Open`, `Merged`, `Closed`, as status writes it.
pub fn state_name(s: PrState) -> &'static str {
    match s {
        PrState::Open => "Open",
        PrState::Merged => "Merged",
        PrState::Closed => "Closed",
    }
}

/// The first branch of an AppSync: the fixed one, or prefix, namespace and name (AppSyncs of
/// one name in two namespaces never share a branch). Pure.
pub fn first_branch(spec: &PullRequestSpec, aps: &str) -> String {
    match &spec.branch {
        Some(b) => b.clone(),
        None => format!(
            "{}{aps}",
            spec.branch_prefix.as_deref().unwrap_or(DEFAULT_PREFIX)
        ),
    }
}

/// The branch after `branch` (whose request ended): `x` → `x-2`, `x-2` → `x-3`. Pure.
pub fn next_branch(first: &str, branch: &str) -> String {
    let n = branch
        .strip_prefix(first)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(1);
    format!("{first}-{}", n.saturating_add(1))
}

/// Where changes go given the last known request. Pure.
pub fn working_branch(
    spec: &PullRequestSpec,
    aps_name: &str,
    last: Option<&PullRequestStatus>,
) -> String {
    let first = first_branch(spec, aps_name);
    match last {
        Some(pr) if pr.state == "Open" => pr.branch.clone(),
        Some(pr) => next_branch(&first, &pr.branch),
        None => first,
    }
}

/// `{app}`, `{version}`, `{branch}`, `{base}` replaced. Pure.
pub fn render(template: &str, app: &str, version: &str, branch: &str, base: &str) -> String {
    template
        .replace("{app}", app)
        .replace("{version}", version)
        .replace("{branch}", branch)
        .replace("{base}", base)
}

/// `spec.push.pullRequest.apiUrl` may only name the repository's host (or its `api.`
/// subdomain, as api.github.com): the config's token goes there, and whoever may edit an
/// AppSync must not be able to send it elsewhere.
pub fn check_api_host(api: &str, repo: &crate::git::RepoUrl) -> Result<(), Problem> {
    let refused = |why: &str| {
        Problem::stalled(
            Reason::InvalidSpec,
            format!("spec.push.pullRequest.apiUrl {api:?} {why}: the GitSyncConfig's token is sent to it, so it must be on the repository's host ({}), or its api. subdomain. An API elsewhere (GitHub Enterprise Server) belongs in the credentials Secret, as githubEnterpriseApiUrl", repo.https_host().map(|(h, _)| h).unwrap_or("?")),
        )
    };
    let url = reqwest::Url::parse(api).map_err(|_| refused("is not a URL"))?;
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    let Some((repo_host, _)) = repo.https_host() else {
        return Err(refused(
            "cannot be checked against a repository that is not HTTPS",
        ));
    };
    let repo_host = repo_host.trim_matches(['[', ']']).to_ascii_lowercase();
    if url.scheme() != "https" {
        return Err(refused("is not https://"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refused("carries credentials"));
    }
    if host == repo_host || host == format!("api.{repo_host}") {
        Ok(())
    } else {
        Err(refused("is on another host"))
    }
}

/// A host API failure, as the user must act on it.
pub fn api_problem(e: &ForgeError) -> Problem {
    Problem::retrying(
        Reason::PullRequestFailed,
        format!("the pull-request API failed: {e}. The token (or GitHub App) needs pull-request write access (GitHub: Pull requests read and write; GitLab: api scope; Gitea: write:repository); check spec.push.pullRequest (provider, baseBranch, apiUrl). Retried with backoff; the commits stay on their branch."),
    )
}

fn status_of(pr: &PullRequest) -> PullRequestStatus {
    PullRequestStatus {
        number: pr.number,
        url: pr.url.clone(),
        state: state_name(pr.state).to_string(),
        branch: pr.head_branch.clone(),
        base_branch: pr.base_branch.clone(),
    }
}

/// Pull-request mode for this pass, `None` without `push.pullRequest`. An open request in
/// status is looked up on the host first: merged or closed, changes move to a new branch
/// (and past branches the base already contains, see [`PrMode::settle`]).
pub async fn prepare(
    aps: &AppSync,
    ctx: &Context,
    cfg: &ResolvedConfig,
    prev: &AppSyncStatus,
) -> Result<Option<PrMode>, Failure> {
    let Some(spec) = aps.spec.push.as_ref().and_then(|p| p.pull_request.clone()) else {
        return Ok(None);
    };
    let Some(https) = cfg.transport.https.as_ref() else {
        return Err(Problem::stalled(
            Reason::InvalidSpec,
            format!("spec.push.pullRequest needs the GitSyncConfig {} to use an HTTPS repository URL with a token or GitHub App (spec.repository.auth): its credentials call the host's pull-request API. Use the repository's https:// URL there, or remove spec.push.pullRequest to push to the branch directly", cfg.gsc.name_any()),
        )
        .into());
    };
    let provider = provider(spec.provider);
    if let Some(api) = &spec.api_url {
        check_api_host(api, cfg.url())?;
    }
    let api_base = match (&spec.api_url, &cfg.app_api_base, cfg.url().https_host()) {
        (Some(u), _, _) => u.clone(),
        (None, Some(app), _) if provider == Provider::GitHub => app.clone(),
        (None, _, Some((host, port))) => default_api_base(provider, host, Some(port)),
        (None, _, None) => String::new(),
    };
    let client = ForgeClient::new(
        provider,
        &api_base,
        &cfg.url().repo_path(),
        https.password.clone(),
        https.ca_pem.as_deref(),
        API_TIMEOUT,
    )
    .map_err(|e| api_problem(&e))?;
    let base = spec
        .base_branch
        .clone()
        .unwrap_or_else(|| cfg.branch().to_string());
    let mut status = prev.pull_request.clone();
    if let Some(pr) = status.clone().filter(|p| p.state != "Merged") {
        // Closed ones too: a request reopened on the host is open again.
        let now = client.get(pr.number).await.map_err(|e| api_problem(&e))?;
        status = if now.head_branch == pr.branch && now.base_branch == base {
            Some(PullRequestStatus {
                branch: pr.branch.clone(),
                ..status_of(&now)
            })
        } else {
            // Not this AppSync's request (another repository, or the base changed): the
            // branch's own request is found again from the host.
            None
        };
    }
    let who = format!("{}/{}", aps.namespace().unwrap_or_default(), aps.name_any());
    let branch = working_branch(&spec, &who, status.as_ref());
    for (field, b) in [
        ("the pull-request branch", &branch),
        ("spec.push.pullRequest.baseBranch", &base),
    ] {
        super::super::gitsyncconfig::check_branch_name(b).map_err(|p| {
            Problem::stalled(p.reason, format!("{field} {b:?}: {} (set spec.push.pullRequest.branchPrefix, branch or baseBranch to a valid branch name)", p.message))
        })?;
    }
    if branch == base {
        return Err(Problem::stalled(
            Reason::InvalidSpec,
            format!("the pull-request branch {branch} is the base branch itself: choose another spec.push.pullRequest.branch (or branchPrefix)"),
        )
        .into());
    }
    let mut mode = PrMode {
        first: first_branch(&spec, &who),
        branch,
        base,
        client,
        spec,
        status,
    };
    mode.settle(ctx, cfg).await?;
    Ok(Some(mode))
}

impl PrMode {
    /// Without a request known to be open, a working branch the base already contains (its
    /// request merged, the status that said so lost) is passed over for the next name.
    async fn settle(&mut self, ctx: &Context, cfg: &ResolvedConfig) -> Result<(), Failure> {
        if self.status.as_ref().is_some_and(|p| p.state == "Open") {
            return Ok(());
        }
        let worker = ctx.workers.get(cfg.url());
        let max_age = cfg.valid.interval;
        let first = self.first.clone();
        for _ in 0..MAX_BRANCH_STEPS {
            let head = worker
                .remote_head(cfg.transport.clone(), &self.branch, max_age)
                .await?;
            let base = worker
                .remote_head(cfg.transport.clone(), &self.base, max_age)
                .await?;
            let (Some(head), Some(base)) = (head, base) else {
                return Ok(());
            };
            if !worker
                .is_ancestor(cfg.transport.clone(), &head, &base, max_age)
                .await?
            {
                return Ok(());
            }
            self.branch = next_branch(&first, &self.branch);
        }
        Ok(())
    }

    /// Makes sure an open request carries the working branch, when that branch exists and
    /// differs from the base: the one in status, one the host already has (a pass killed
    /// after its push), or a new one.
    pub async fn ensure(
        &mut self,
        ctx: &Context,
        cfg: &ResolvedConfig,
        app: &str,
        version: &str,
    ) -> Result<(), Failure> {
        if self
            .status
            .as_ref()
            .is_some_and(|p| p.state == "Open" && p.branch == self.branch)
        {
            return Ok(());
        }
        let worker = ctx.workers.get(cfg.url());
        let max_age = cfg.valid.interval;
        let head = worker
            .remote_head(cfg.transport.clone(), &self.branch, max_age)
            .await?;
        let Some(head) = head else {
            return Ok(());
        };
        let base = worker
            .remote_head(cfg.transport.clone(), &self.base, max_age)
            .await?;
        if base.as_deref() == Some(head.as_str()) {
            return Ok(());
        }
        let found = self
            .client
            .find_open(&self.branch, &self.base)
            .await
            .map_err(|e| api_problem(&e))?;
        let pr = match found {
            Some(pr) => pr,
            None => {
                let title = render(
                    self.spec.title.as_deref().unwrap_or(DEFAULT_TITLE),
                    app,
                    version,
                    &self.branch,
                    &self.base,
                );
                let body = render(
                    self.spec.body.as_deref().unwrap_or(DEFAULT_BODY),
                    app,
                    version,
                    &self.branch,
                    &self.base,
                );
                self.client
                    .open(&self.branch, &self.base, &title, &body)
                    .await
                    .map_err(|e| api_problem(&e))?
            }
        };
        self.status = Some(PullRequestStatus {
            branch: self.branch.clone(),
            ..status_of(&pr)
        });
        Ok(())
    }

    /// The last request, when it was closed without merging.
    pub fn closed(&self) -> Option<&PullRequestStatus> {
        self.status.as_ref().filter(|p| p.state == "Closed")
    }

    /// The Synced message when the change waits in the open request.
    pub fn waiting_message(&self) -> Option<String> {
        let pr = self.status.as_ref().filter(|p| p.state == "Open")?;
        Some(format!(
            "committed to branch {} and waiting in pull request #{} ({}) against {}: merge it to promote the change",
            pr.branch, pr.number, pr.url, pr.base_branch
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PullRequestSpec {
        PullRequestSpec {
            provider: ForgeProvider::GitHub,
            base_branch: None,
            branch_prefix: None,
            branch: None,
            title: None,
            body: None,
            api_url: None,
        }
    }

    fn pr(state: &str, branch: &str) -> PullRequestStatus {
        PullRequestStatus {
            number: 7,
            url: "u".into(),
            state: state.into(),
            branch: branch.into(),
            base_branch: "main".into(),
        }
    }

    #[test]
    fn branches_follow_the_requests() {
        let s = spec();
        assert_eq!(working_branch(&s, "web", None), "tooljet-gitsync/web");
        assert_eq!(
            working_branch(&s, "team/web", None),
            "tooljet-gitsync/team/web"
        );
        let open = pr("Open", "tooljet-gitsync/web-3");
        assert_eq!(
            working_branch(&s, "web", Some(&open)),
            "tooljet-gitsync/web-3"
        );
        for ended in ["Merged", "Closed"] {
            assert_eq!(
                working_branch(&s, "web", Some(&pr(ended, "tooljet-gitsync/web"))),
                "tooljet-gitsync/web-2"
            );
            assert_eq!(
                working_branch(&s, "web", Some(&pr(ended, "tooljet-gitsync/web-2"))),
                "tooljet-gitsync/web-3"
            );
        }
        let fixed = PullRequestSpec {
            branch: Some("promote/sales".into()),
            ..spec()
        };
        assert_eq!(working_branch(&fixed, "a", None), "promote/sales");
        assert_eq!(
            working_branch(&fixed, "b", Some(&pr("Merged", "promote/sales"))),
            "promote/sales-2"
        );
        // A branch of another scheme (the prefix changed) starts the count again.
        assert_eq!(next_branch("p/web", "old/web-9"), "p/web-2");
    }

    #[test]
    fn the_api_stays_on_the_repository_host() {
        let repo = crate::git::RepoUrl::parse("https://GitHub.com/acme/apps.git").unwrap();
        assert!(check_api_host("https://api.github.com", &repo).is_ok());
        assert!(check_api_host("https://github.com/api/v3", &repo).is_ok());
        for bad in [
            "https://evil.example/api/v3",
            "https://api.github.com.evil.example",
            "http://api.github.com",
            "https://u:p@api.github.com",
            "not a url",
        ] {
            let p = check_api_host(bad, &repo).unwrap_err();
            assert_eq!(p.reason, Reason::InvalidSpec, "{bad}");
            assert!(
                p.message.contains("githubEnterpriseApiUrl"),
                "{}",
                p.message
            );
        }
    }

    #[test]
    fn templates() {
        assert_eq!(
            render(DEFAULT_TITLE, "Sales", "v2", "b", "main"),
            "ToolJet: Sales v2"
        );
        assert!(render(DEFAULT_BODY, "Sales", "v2", "b", "main").contains("`main`"));
    }
}
