//! Applying a plan: one idempotent attempt that keeps going past a failed user and reports each outcome.
//!
//! Order matters for safety (see `ledger`): claim the values to add in the ledger, re-read each user, write, then
//! settle the ledger from what was really written. Apply makes no decisions of its own: it re-merges the plan's
//! additions and removals into the freshest read with the planner's own [`merge`], so an administrator's edit made
//! since the run started is kept.

use std::collections::{BTreeMap, BTreeSet};

use super::ledger::Ledger;
use super::plan::{Conflict, Plan, Skip, UserChange, merge};
use super::report::{ChangeResult, ChangeStatus, ErrorDetail};
use crate::domain::{MAX_VALUES_PER_USER, UserId};
use crate::graph::{DirectoryUser, GraphClient};
use crate::storage::{BlobStore, update_json};

/// What apply did.
#[must_use]
#[derive(Debug, Default)]
pub struct Applied {
    pub changes: Vec<ChangeResult>,
    pub conflicts: Vec<Conflict>,
    pub skipped: Vec<Skip>,
    pub notes: Vec<String>,
}

/// Read-modify-write attempts on the ledger before giving up (a conflict means another writer got in between).
const LEDGER_ATTEMPTS: u32 = 8;
const REREAD_SELECT: &[&str] = &["id", "userPrincipalName", "onPremisesSyncEnabled", "authorizationInfo"];

fn failed_all(plan: &Plan, message: String) -> Applied {
    let error = ErrorDetail { status: None, code: None, message, request_id: None };
    Applied {
        changes: plan
            .changes
            .iter()
            .map(|c| ChangeResult { change: c.clone(), status: ChangeStatus::Failed, error: Some(error.clone()) })
            .collect(),
        ..Applied::default()
    }
}

pub async fn apply(plan: &Plan, target: &GraphClient, state: &dyn BlobStore, ledger_blob: &str) -> Applied {
    if plan.is_empty() {
        return Applied::default();
    }

    // 1. Claim what we are about to add, before it is on any user.
    let claims: Vec<(&UserId, &[String])> =
        plan.changes.iter().filter(|c| !c.add.is_empty()).map(|c| (&c.user.id, c.add.as_slice())).collect();
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
            return failed_all(plan, format!("not written: the ownership ledger could not be updated first ({error})"));
        }
    }

    // 2. Re-read every user just before writing.
    let ids: Vec<UserId> = plan.changes.iter().map(|c| c.user.id.clone()).collect();
    let fresh: BTreeMap<UserId, Option<DirectoryUser>> = match target.get_users(&ids, REREAD_SELECT).await {
        Ok(users) => users.into_iter().collect(),
        Err(error) => {
            return failed_all(plan, format!("not written: re-reading the users before writing failed ({error})"));
        }
    };

    let mut applied = Applied::default();
    let mut pending: Vec<(UserChange, Vec<String>)> = Vec::new();
    for change in &plan.changes {
        let Some(Some(user)) = fresh.get(&change.user.id) else {
            applied.changes.push(ChangeResult {
                change: change.clone(),
                status: ChangeStatus::Failed,
                error: Some(ErrorDetail {
                    status: Some(404),
                    code: Some("Request_ResourceNotFound".into()),
                    message: "the user was deleted before it could be written".into(),
                    request_id: None,
                }),
            });
            continue;
        };
        let current = &user.certificate_user_ids;
        let mut add = change.add.clone();
        let mut after = merge(current, &add, &change.remove);
        // An administrator may have added values since the plan: never exceed the limit, drop our newest additions.
        while after.len() > MAX_VALUES_PER_USER && !add.is_empty() {
            let dropped = add.pop().expect("not empty");
            applied.skipped.push(Skip {
                user: change.user.clone(),
                side: super::matching::Side::TenantB,
                reason: format!("would exceed the limit of {MAX_VALUES_PER_USER} values after a concurrent edit; not added: {dropped}"),
            });
            after = merge(current, &add, &change.remove);
        }
        let mut change = change.clone();
        change.before = current.clone();
        change.add = add;
        change.after = after.clone();
        if after == *current {
            applied.changes.push(ChangeResult { change, status: ChangeStatus::AlreadyApplied, error: None });
        } else {
            pending.push((change, after));
        }
    }

    // 3. Users losing values first, so a value moving between users is free when the new holder is written.
    let (first, second): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(c, _)| !c.remove.is_empty());
    for phase in [first, second] {
        if phase.is_empty() {
            continue;
        }
        let writes: Vec<(UserId, Vec<String>)> =
            phase.iter().map(|(c, after)| (c.user.id.clone(), after.clone())).collect();
        let mut outcomes: BTreeMap<UserId, _> = target.set_certificate_user_ids(writes).await.into_iter().collect();
        for (change, _) in phase {
            match outcomes.remove(&change.user.id) {
                Some(Ok(())) => {
                    applied.changes.push(ChangeResult { change, status: ChangeStatus::Applied, error: None })
                }
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
                    applied.changes.push(ChangeResult {
                        change,
                        status: ChangeStatus::Failed,
                        error: Some(ErrorDetail::from(&error)),
                    });
                }
                None => applied.changes.push(ChangeResult {
                    change,
                    status: ChangeStatus::Failed,
                    error: Some(ErrorDetail {
                        status: None,
                        code: None,
                        message: "Graph returned no result for this write".into(),
                        request_id: None,
                    }),
                }),
            }
        }
    }

    // 4. Settle the ledger from what is really on each user now.
    let changed: BTreeSet<&UserId> = applied.changes.iter().map(|c| &c.change.user.id).collect();
    let settled = update_json::<Ledger, _>(state, ledger_blob, LEDGER_ATTEMPTS, |current| {
        let mut ledger = current.unwrap_or_else(Ledger::new);
        for result in &applied.changes {
            let id = &result.change.user.id;
            match result.status {
                ChangeStatus::Applied | ChangeStatus::AlreadyApplied => {
                    let kept: Vec<String> =
                        ledger.owned(id).iter().filter(|v| result.change.after.contains(v)).cloned().collect();
                    ledger.set(id.clone(), kept);
                }
                // A failed write keeps its claims: the next plan drops any claimed value that is not on the user.
                ChangeStatus::Failed | ChangeStatus::Planned => {}
            }
        }
        let others: BTreeSet<UserId> = ledger
            .users
            .keys()
            .chain(plan.ledger_after.users.keys())
            .filter(|id| !changed.contains(id))
            .cloned()
            .collect();
        for id in others {
            ledger.set(id.clone(), plan.ledger_after.owned(&id).to_vec());
        }
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
