//! Which Pull AppSyncs and AppSyncSets follow which ref of which repository, so that a ref the
//! repository worker sees move (a fetch, an `ls-remote`, the operator's own push) re-runs them
//! at once instead of at their next interval. Each records what it follows on every pass; a
//! deleted object forgets it.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::git::worker::RefMoved;

/// What a followed ref belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Follower {
    /// A Pull AppSync.
    AppSync,
    /// A Pull AppSyncSet.
    AppSyncSet,
}

/// Followers by kind and `namespace/name`: the repository identity and the revision.
#[derive(Default)]
pub struct Follows {
    map: Mutex<HashMap<(Follower, String), (String, String)>>,
}

impl Follows {
    /// Records that `key` (`namespace/name`) follows `revision` of `repository`.
    pub fn follow(&self, kind: Follower, key: &str, repository: &str, revision: &str) {
        let Ok(mut m) = self.map.lock() else { return };
        let entry = (kind, key.to_owned());
        if m.get(&entry)
            .is_some_and(|(r, v)| r == repository && v == revision)
        {
            return;
        }
        m.insert(entry, (repository.to_owned(), revision.to_owned()));
    }

    /// Forgets a deleted object, or one that follows nothing any more.
    pub fn unfollow(&self, kind: Follower, key: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&(kind, key.to_owned()));
        }
    }

    /// Whether any follower (of either kind) in `namespace` cares about the move: a webhook
    /// delivery for a config of `namespace` checks only for its own namespace's followers.
    pub fn followed_in(&self, namespace: &str, moved: &RefMoved) -> bool {
        let Ok(m) = self.map.lock() else {
            return false;
        };
        m.iter().any(|((_, key), (repo, rev))| {
            key.split_once('/').is_some_and(|(ns, _)| ns == namespace) && moved.concerns(repo, rev)
        })
    }

    /// The `(namespace, name)` of every follower of `kind` the move concerns.
    pub fn concerned(&self, kind: Follower, moved: &RefMoved) -> Vec<(String, String)> {
        let Ok(m) = self.map.lock() else {
            return Vec::new();
        };
        m.iter()
            .filter(|((k, _), (repo, rev))| *k == kind && moved.concerns(repo, rev))
            .filter_map(|((_, key), _)| {
                let (ns, name) = key.split_once('/')?;
                Some((ns.to_owned(), name.to_owned()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(repo: &str, r: &str) -> RefMoved {
        RefMoved {
            repository: repo.into(),
            reference: r.into(),
        }
    }

    #[test]
    fn a_move_reaches_the_followers_of_its_ref_only() {
        let f = Follows::default();
        f.follow(Follower::AppSync, "a/main", "repo1", "main");
        f.follow(Follower::AppSync, "a/tag", "repo1", "v1");
        f.follow(Follower::AppSync, "b/other-repo", "repo2", "main");
        f.follow(Follower::AppSyncSet, "a/set", "repo1", "main");
        let mut hit = f.concerned(Follower::AppSync, &moved("repo1", "refs/heads/main"));
        hit.sort();
        assert_eq!(hit, vec![("a".to_string(), "main".to_string())]);
        assert_eq!(
            f.concerned(Follower::AppSync, &moved("repo1", "refs/tags/v1")),
            vec![("a".to_string(), "tag".to_string())]
        );
        assert_eq!(
            f.concerned(Follower::AppSyncSet, &moved("repo1", "refs/heads/main")),
            vec![("a".to_string(), "set".to_string())]
        );
        assert!(f
            .concerned(Follower::AppSync, &moved("repo1", "refs/heads/mainline"))
            .is_empty());
        assert!(f.followed_in("a", &moved("repo1", "refs/tags/v1")));
        assert!(!f.followed_in("b", &moved("repo1", "refs/tags/v1")));
        assert!(!f.followed_in("a", &moved("repo2", "refs/heads/main")));
        f.unfollow(Follower::AppSync, "a/main");
        assert!(f
            .concerned(Follower::AppSync, &moved("repo1", "refs/heads/main"))
            .is_empty());
    }

    #[test]
    fn a_revision_given_as_a_full_ref_matches() {
        let f = Follows::default();
        f.follow(Follower::AppSync, "a/x", "r", "refs/heads/dev");
        assert_eq!(
            f.concerned(Follower::AppSync, &moved("r", "refs/heads/dev"))
                .len(),
            1
        );
        f.follow(Follower::AppSync, "a/x", "r", "prod");
        assert!(f
            .concerned(Follower::AppSync, &moved("r", "refs/heads/dev"))
            .is_empty());
    }
}
