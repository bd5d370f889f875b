//! Applying a plan: one idempotent attempt that keeps going past a failed user and reports each outcome.
//!
//! Order matters for safety (see `ledger`): claim the values to add in the ledger, re-read each user, write, then
//! settle the ledger from what was really written. Apply makes no decisions of its own: it re-merges the plan's
//! additions and removals into the freshest read with the planner's own [`merge`], so an administrator's edit made
//! since the run started is kept.

use std::collections::BTreeMap;

use super::ledger::Ledger;
use super::plan::{Conflict, Plan, Skip, UserChange, merge, owned_after};
use super::report::{ChangeResult, ChangeStatus, ErrorDetail};
use crate::domain::{MAX_VALUES_PER_USER, MatchKey, Side, UserId};
use crate::graph::{DirectoryUser, GraphClient, TARGET_SELECT};
use crate::storage::{BlobStore, update_json};

/// What apply did.
#[must_use]
#[derive(Debug, Default)]
pub struct Applied {
    pub changes: Vec<ChangeResult>,
    pub conflicts: Vec<Conflict>,
    pub skipped: Vec<Skip>,
    pub notes: Vec<String>,
    /// Why apply stopped before the end (the run's lease was lost): the run failed, whatever was written.
    pub aborted: Option<String>,
}

impl Applied {
    /// No user failed and apply ran to its end: every planned change is in place.
    pub fn all_written(&self) -> bool {
        self.aborted.is_none() && !self.changes.iter().any(|c| c.status == ChangeStatus::Failed)
    }
}

/// Whether this run may still write to the tenant: asked before every write round and before the ledger is settled,
/// so a run that lost its lease stops before it writes over another run's work. `Err`: why not.
#[async_trait::async_trait]
pub trait WritePermit: Send + Sync {
    async fn confirm(&self) -> Result<(), String>;
}

/// Read-modify-write attempts on the ledger before giving up (a conflict means another writer got in between).
const LEDGER_ATTEMPTS: u32 = 8;

/// Users re-read and written per round. A round bounds what apply holds besides the results (the fresh reads and the
/// write bodies) whatever the size of the plan; 2,000 users are 100 `$batch` requests, enough to keep the client's
/// concurrency busy. At 100,000 users, holding every fresh read and write body at once was a third of a first
/// sync's peak memory (BENCHMARKS.md).
const USERS_PER_ROUND: usize = 2_000;

fn failed(change: UserChange, error: ErrorDetail) -> ChangeResult {
    ChangeResult { change, status: ChangeStatus::Failed, error: Some(Box::new(error)) }
}

fn not_written(message: &str) -> ErrorDetail {
    ErrorDetail { status: None, code: None, message: message.to_owned(), request_id: None }
}

/// Applies the plan's changes, consuming them: each becomes its result without a copy.
pub async fn apply(
    plan: Plan,
    target: &GraphClient,
    state: &dyn BlobStore,
    ledger_blob: &str,
    permit: &dyn WritePermit,
    match_key: &MatchKey,
) -> Applied {
    if plan.is_empty() {
        return Applied::default();
    }
    let Plan { mut changes, ledger_edits, .. } = plan;

    // 1. Claim what we are about to add, before it is on any user (observing took a while: is the lease still ours?).
    if let Err(reason) = permit.confirm().await {
        tracing::error!(%reason, "not applying the plan");
        let error = not_written(&format!("not written: {reason}"));
        return Applied {
            changes: changes.into_iter().map(|c| failed(c, error.clone())).collect(),
            aborted: Some(reason),
            ..Applied::default()
        };
    }
    let claims: Vec<(&UserId, &[String])> =
        changes.iter().filter(|c| !c.add.is_empty()).map(|c| (&c.user.id, c.add.as_slice())).collect();
    if !claims.is_empty() {
        let claimed = update_json::<Ledger, _>(state, ledger_blob, LEDGER_ATTEMPTS, |current| {
            let mut ledger = current.unwrap_or_else(Ledger::new);
            for (user, values) in &claims {
                ledger.claim(user, values);
            }
            ledger
        })
        .await;
        if let Err(error) = claimed {
            let error = not_written(&format!("not written: the ownership ledger could not be updated first ({error})"));
            return Applied {
                changes: changes.into_iter().map(|c| failed(c, error.clone())).collect(),
                ..Applied::default()
            };
        }
        // Claiming read, parsed and rewrote the whole ledger document (MBs at 100,000 users); the rounds below
        // allocate in small pieces, which would otherwise land on top of that freed memory rather than in it.
        crate::memory::release_freed_memory();
    }

    // 2. Users losing values first, every one of them before any other, so a value moving between users is free when
    // its new holder is written. Round by round, each round's users re-read just before they are written.
    let mut applied = Applied { changes: Vec::with_capacity(changes.len()), ..Applied::default() };
    // Sorted in place (stable) rather than split into two new lists: at 100,000 changes each list is 16 MB.
    changes.sort_by_key(|c| c.remove.is_empty());
    let losing = changes.iter().take_while(|c| !c.remove.is_empty()).count();
    let phases = [losing, changes.len() - losing];
    let mut changes = changes.into_iter();
    let mut reread_failed: Option<ErrorDetail> = None;
    for phase in phases {
        let mut left = phase;
        while left > 0 {
            let round: Vec<UserChange> = changes.by_ref().take(left.min(USERS_PER_ROUND)).collect();
            if round.is_empty() {
                break;
            }
            left -= round.len();
            if reread_failed.is_none()
                && let Err(reason) = permit.confirm().await
            {
                tracing::error!(%reason, "stopping before the next write round");
                reread_failed = Some(not_written(&format!("not written: {reason}")));
                applied.aborted = Some(reason);
            }
            if let Some(error) = &reread_failed {
                applied.changes.extend(round.into_iter().map(|c| failed(c, error.clone())));
                continue;
            }
            if let Err((round, error)) = write_round(round, target, match_key, &mut applied).await {
                applied.changes.extend(round.into_iter().map(|c| failed(c, error.clone())));
                reread_failed = Some(error);
            }
        }
    }
    drop(changes);

    // 4. Settle the ledger from what is really on each user now, and record the plan's other edits. A run that lost
    // its lease leaves the ledger to the run that holds it: the claims it made already cover what it wrote.
    if applied.aborted.is_none()
        && let Err(reason) = permit.confirm().await
    {
        tracing::error!(%reason, "not settling the ownership ledger");
        applied.aborted = Some(reason);
    }
    if applied.aborted.is_some() {
        return applied;
    }
    let settled = update_json::<Ledger, _>(state, ledger_blob, LEDGER_ATTEMPTS, |current| {
        let mut ledger = current.unwrap_or_else(Ledger::new);
        for result in &applied.changes {
            let id = &result.change.user.id;
            match result.status {
                // The claimed entry holds every value the write added, so what is kept is the planned entry.
                ChangeStatus::Applied | ChangeStatus::AlreadyApplied => {
                    let kept = owned_after(ledger.owned(id), &result.change);
                    ledger.set(id.clone(), kept);
                }
                // A failed write keeps its claims: the next plan drops any claimed value that is not on the user.
                ChangeStatus::Failed | ChangeStatus::Planned => {}
            }
        }
        ledger_edits.apply_to(&mut ledger);
        ledger
    })
    .await;
    if let Err(error) = settled {
        applied.notes.push(format!(
            "the ownership ledger could not be settled after writing ({error}); this is safe: the next run reconciles it"
        ));
    }
    applied
}

/// Re-reads one round's users and writes those whose list still changes. When the re-read fails nothing of the
/// round is written, and the round comes back with the reason.
async fn write_round(
    round: Vec<UserChange>,
    target: &GraphClient,
    match_key: &MatchKey,
    applied: &mut Applied,
) -> Result<(), (Vec<UserChange>, ErrorDetail)> {
    let ids: Vec<UserId> = round.iter().map(|c| c.user.id.clone()).collect();
    let mut select = TARGET_SELECT.to_vec();
    let key_property = match_key.attribute().graph_property();
    if !select.contains(&key_property) {
        select.push(key_property);
    }
    let fresh: BTreeMap<UserId, Option<DirectoryUser>> = match target.get_users(&ids, &select).await {
        Ok(users) => users.into_iter().collect(),
        Err(error) => {
            let message = format!("not written: re-reading the users before writing failed ({error})");
            return Err((round, not_written(&message)));
        }
    };
    drop(ids);

    let mut pending: Vec<(UserChange, Vec<String>)> = Vec::new();
    for mut change in round {
        let Some(Some(user)) = fresh.get(&change.user.id) else {
            applied.changes.push(failed(
                change,
                ErrorDetail {
                    status: Some(404),
                    code: Some("Request_ResourceNotFound".into()),
                    message: "the user was deleted before it could be written".into(),
                    request_id: None,
                },
            ));
            continue;
        };
        if user.certificate_user_ids_unknown {
            applied.changes.push(failed(
                change,
                not_written(
                    "not written: the re-read had no authorizationInfo.certificateUserIds list of strings, so what \
                     the user holds is unknown",
                ),
            ));
            continue;
        }
        // The plan skips users synchronized from on-premises; one that became so since is not written either.
        if user.on_premises_sync_enabled == Some(true) {
            applied.changes.push(failed(
                change,
                not_written(
                    "not written: the user is now synchronized from on-premises (onPremisesSyncEnabled); its \
                     certificateUserIds can only be set through Microsoft Entra Connect",
                ),
            ));
            continue;
        }
        // Renamed since the plan (a new UPN, mail, employeeId…): the values were meant for whoever had the old key.
        if let Some(planned) = &change.key
            && let now = match_key.key_of(user)
            && now.as_ref() != Some(planned)
        {
            let now = now.unwrap_or_else(|| "none".to_owned());
            let message = format!(
                "not written: its {match_key} changed since the plan (was {planned:?}, now {now:?}); the next run matches \
                 it again"
            );
            applied.changes.push(failed(change, not_written(&message)));
            continue;
        }
        let current = &user.certificate_user_ids;
        let mut after = merge(current, &change.add, &change.remove);
        // An administrator may have added values since the plan: never exceed the limit, drop our newest additions.
        while after.len() > MAX_VALUES_PER_USER {
            let Some(dropped) = change.add.pop() else { break };
            applied.skipped.push(Skip {
                user: change.user.clone(),
                side: Side::TenantB,
                reason: format!("would exceed the limit of {MAX_VALUES_PER_USER} values after a concurrent edit; not added: {dropped}"),
            });
            after = merge(current, &change.add, &change.remove);
        }
        change.before.clone_from(current);
        if after == *current {
            applied.changes.push(ChangeResult { change, status: ChangeStatus::AlreadyApplied, error: None });
        } else {
            pending.push((change, after));
        }
    }
    drop(fresh);
    if pending.is_empty() {
        return Ok(());
    }

    let (changes, writes): (Vec<UserChange>, Vec<(UserId, Vec<String>)>) = pending
        .into_iter()
        .map(|(change, after)| {
            let id = change.user.id.clone();
            (change, (id, after))
        })
        .unzip();
    let mut outcomes: BTreeMap<UserId, _> = target.set_certificate_user_ids(writes).await.into_iter().collect();
    for change in changes {
        match outcomes.remove(&change.user.id) {
            Some(Ok(())) => applied.changes.push(ChangeResult { change, status: ChangeStatus::Applied, error: None }),
            Some(Err(error)) => {
                if error.is_uniqueness_conflict() {
                    for value in &change.add {
                        if let Ok(holders) = target.find_certificate_user_id_holders(value).await {
                            for (holder_id, upn) in holders.into_iter().filter(|(id, _)| *id != change.user.id) {
                                applied.conflicts.push(Conflict {
                                    user: change.user.clone(),
                                    value: value.clone(),
                                    holder_id: holder_id.to_string(),
                                    holder_user_principal_name: Some(upn),
                                });
                            }
                        }
                    }
                }
                applied.changes.push(failed(change, ErrorDetail::from(&error)));
            }
            None => applied.changes.push(failed(change, not_written("Graph returned no result for this write"))),
        }
    }
    Ok(())
}
