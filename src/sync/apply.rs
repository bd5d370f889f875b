//! Applying a plan: one idempotent attempt that keeps going past a failed user and reports each outcome.
//!
//! Order matters for safety (see `ledger`): claim the values to add in the ledger, re-read each user, write, then
//! settle the ledger from what was really written. Apply makes no decisions of its own: it re-merges the plan's
//! additions and removals into the freshest read with the planner's own [`merge`], so an administrator's edit made
//! since the run started is kept.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use super::ledger::Ledger;
use super::plan::{Conflict, Plan, Skip, UserChange, merge, owned_after};
use super::report::{ChangeResult, ChangeStatus, ErrorDetail};
use crate::domain::{MAX_VALUES_PER_USER, MatchKey, Side, UserId};
use crate::graph::{DirectoryUser, GraphClient, TARGET_SELECT, WriteReservation};
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
    /// The soft deadline came before the end: the changes not started are [`ChangeStatus::Deferred`], for a
    /// continuation.
    pub continued: bool,
}

impl Applied {
    /// No user failed and apply ran to its end: every planned change is in place.
    pub fn all_written(&self) -> bool {
        self.aborted.is_none()
            && !self.continued
            && !self.changes.iter().any(|c| matches!(c.status, ChangeStatus::Failed | ChangeStatus::Deferred))
    }

    /// How many changes are left for a continuation.
    pub fn deferred(&self) -> usize {
        self.changes.iter().filter(|c| c.status == ChangeStatus::Deferred).count()
    }

    fn absorb(&mut self, piece: Applied) {
        self.changes.extend(piece.changes);
        self.conflicts.extend(piece.conflicts);
        self.skipped.extend(piece.skipped);
        self.notes.extend(piece.notes);
    }
}

/// The once-a-minute progress line of a long apply: users written, users left, and when the write budget lets the
/// rest be done.
struct Progress {
    total: usize,
    last: Instant,
}

/// How often a long apply says where it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(60);

impl Progress {
    fn new(total: usize) -> Self {
        Self { total, last: Instant::now() }
    }

    fn tick(&mut self, applied: &Applied, queued: usize, target: &GraphClient) {
        if self.last.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last = Instant::now();
        let written = applied.changes.iter().filter(|c| c.status == ChangeStatus::Applied).count();
        let budget = target.write_budget();
        // Derived: the documented budget's steady rate (3,000 per 150 s is 20 per second).
        let eta_secs = (queued as f64 * budget.window.as_secs_f64() / f64::from(budget.units)).ceil() as u64;
        tracing::info!(
            written,
            done = applied.changes.len(),
            remaining = queued,
            total = self.total,
            eta_secs,
            "writing certificateUserIds: {written} written, {queued} left, about {eta_secs} s to go at the write budget"
        );
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

/// Users re-read and written together: one `$batch` of reads, one of writes [json-batching].
const CHUNK_USERS: usize = 20;

/// Chunks re-reading or writing at once: the client's concurrency (8 requests), so the budget is what limits a first
/// sync, not the latency. What apply holds besides the results is these chunks' fresh reads and write bodies.
const CHUNKS_IN_FLIGHT: usize = 8;

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
    deadline: Option<Instant>,
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
    // its new holder is written. Chunk by chunk: the write budget is reserved, then the chunk's users are re-read,
    // then written, so no more than a round trip passes between a user's re-read and its write (a round of 2,000
    // re-read at once waited up to 100 s for Graph's write budget before its last users were written).
    let mut applied = Applied { changes: Vec::with_capacity(changes.len()), ..Applied::default() };
    // Sorted in place (stable) rather than split into two new lists: at 100,000 changes each list is 16 MB.
    changes.sort_by_key(|c| c.remove.is_empty());
    let mut losing_left = changes.iter().take_while(|c| !c.remove.is_empty()).count();
    let mut queue: VecDeque<UserChange> = changes.into();
    let mut losing_in_flight = 0usize;
    let mut stopped: Option<ErrorDetail> = None;
    let mut started_chunks = 0usize;
    let mut progress = Progress::new(queue.len());
    let mut in_flight = FuturesUnordered::new();
    loop {
        while stopped.is_none() && !applied.continued && in_flight.len() < CHUNKS_IN_FLIGHT && !queue.is_empty() {
            let losing = losing_left > 0;
            if !losing && losing_in_flight > 0 {
                break; // the gaining phase starts once every losing chunk is answered
            }
            // Nothing is awaited here but the chunks themselves: a chunk in flight may hold a lock of the store (the
            // local store's in-process mutex, inside its lease confirmation) that only polling it releases. Each chunk
            // confirms the lease right before its write.
            // Every run writes at least its first chunks, so a deadline that came while reading still makes progress.
            if started_chunks >= CHUNKS_IN_FLIGHT && deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                tracing::info!(
                    left = queue.len(),
                    "the run's soft deadline has come: the rest is left to a continuation"
                );
                applied.continued = true;
                break;
            }
            let take = if losing { losing_left } else { queue.len() }.min(CHUNK_USERS);
            let chunk: Vec<UserChange> = queue.drain(..take).collect();
            if losing {
                losing_left -= chunk.len();
                losing_in_flight += 1;
            }
            started_chunks += 1;
            in_flight.push(write_chunk(chunk, losing, target, match_key, deadline, permit));
        }
        let Some(ChunkWritten { result, held, losing }) = in_flight.next().await else { break };
        if losing {
            losing_in_flight -= 1;
            losing_left += held.len();
        }
        for change in held.into_iter().rev() {
            queue.push_front(change);
        }
        match result {
            Ok(mut piece) => {
                if let Some(reason) = piece.aborted.take() {
                    stopped.get_or_insert_with(|| not_written(&format!("not written: {reason}")));
                    applied.aborted.get_or_insert(reason);
                }
                applied.absorb(piece);
            }
            Err((chunk, error)) => {
                applied.changes.extend(chunk.into_iter().map(|c| failed(c, error.clone())));
                stopped.get_or_insert(error);
            }
        }
        progress.tick(&applied, queue.len(), target);
    }
    drop(in_flight);
    match &stopped {
        Some(error) => applied.changes.extend(queue.into_iter().map(|c| failed(c, error.clone()))),
        // Left for the continuation: not failed, not written; their claims stay in the ledger.
        None => applied.changes.extend(queue.into_iter().map(|change| ChangeResult {
            change,
            status: ChangeStatus::Deferred,
            error: None,
        })),
    }

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
                ChangeStatus::Failed | ChangeStatus::Planned | ChangeStatus::Deferred => {}
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

/// One chunk's answer, and the changes the write budget did not cover this time (a probe takes one).
struct ChunkWritten {
    result: Result<Applied, (Vec<UserChange>, ErrorDetail)>,
    held: Vec<UserChange>,
    losing: bool,
}

/// Reserves the write budget for up to one chunk, then re-reads and writes what it covers.
async fn write_chunk(
    mut chunk: Vec<UserChange>,
    losing: bool,
    target: &GraphClient,
    match_key: &MatchKey,
    deadline: Option<Instant>,
    permit: &dyn WritePermit,
) -> ChunkWritten {
    // Waiting for budget past the soft deadline would only run into the host's timeout: the chunk is left over.
    let reservation = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, target.reserve_writes(chunk.len())).await {
            Ok(reservation) => reservation,
            Err(_) => return ChunkWritten { result: Ok(Applied::default()), held: chunk, losing },
        },
        None => target.reserve_writes(chunk.len()).await,
    };
    let held = chunk.split_off(reservation.writes().min(chunk.len()));
    let result = write_round(chunk, target, match_key, reservation, permit).await;
    ChunkWritten { result, held, losing }
}

/// Re-reads a chunk's users and writes those whose list still changes, the first writes on `reservation`. When the
/// re-read fails nothing of the chunk is written, and the chunk comes back with the reason.
async fn write_round(
    round: Vec<UserChange>,
    target: &GraphClient,
    match_key: &MatchKey,
    reservation: WriteReservation,
    permit: &dyn WritePermit,
) -> Result<Applied, (Vec<UserChange>, ErrorDetail)> {
    let mut applied = Applied::default();
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
        return Ok(applied);
    }

    let (changes, writes): (Vec<UserChange>, Vec<(UserId, Vec<String>)>) = pending
        .into_iter()
        .map(|(change, after)| {
            let id = change.user.id.clone();
            (change, (id, after))
        })
        .unzip();
    // The last moment before the write: a run frozen or slowed past its lease must not write over the run that took
    // it over. With chunks in flight, asking once per 2,000 users left up to 8 chunks to write after the loss.
    if let Err(reason) = permit.confirm().await {
        tracing::error!(%reason, "not writing this chunk");
        let error = not_written(&format!("not written: {reason}"));
        applied.changes.extend(changes.into_iter().map(|c| failed(c, error.clone())));
        applied.aborted = Some(reason);
        return Ok(applied);
    }
    let mut outcomes: BTreeMap<UserId, _> =
        target.set_certificate_user_ids_reserved(writes, Some(reservation)).await.into_iter().collect();
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
    Ok(applied)
}
