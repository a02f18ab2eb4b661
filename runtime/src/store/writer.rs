//! Group commit without a hand-off: writes are queued in memory, and
//! whoever needs them durable (a barrier) commits everything queued so far
//! in one transaction on its own thread, so a sequential run pays no thread
//! wake-ups; concurrent callers find their writes committed by the first.
//! An async caller that finds the connection busy does not block its
//! executor thread on it: it awaits the connection's release (and then
//! finds its writes committed, or commits what is queued by then), so a
//! server's few executor threads go on serving requests during a commit.
//! A background thread commits what nobody waits for (logs, final states)
//! every few milliseconds, and checkpoints the WAL into the database on a
//! connection of its own, so no commit on a runner's thread pays for a
//! checkpoint (copying pages back and two fsyncs).
//!
//! A commit that fails is retried with backoff; if it still fails, its
//! writes are lost: none of their events reaches a watcher, callers that
//! wait for those writes are told, and the store reports itself failing
//! (runners stop their runs rather than go on unrecorded) until a commit
//! succeeds again.

use super::checkpoint::{CheckpointSchedule, WAL_FRAMES_BEFORE_HOLDING_THE_WRITER, checkpoint};
use super::fold::{FoldedRow, History, fold};
use crate::core::ids::RunId;
use crate::core::record::{Event, RunKind, TaskRunRecord};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, Transaction, params};
use rustc_hash::FxHashSet;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};

/// How long a write nobody waits for may stay uncommitted.
const BACKGROUND_PERIOD: Duration = Duration::from_millis(5);

/// Queued writes that wake the background thread before its period ends:
/// a `batched` run queues a period's writes in far less time than the
/// period, and whatever is still queued when the run ends is committed on
/// its own thread, on its critical path (about 1 ms for a period's worth).
const WAKE_AT_QUEUED: usize = 256;

/// Waits before each new try of a failed commit: a locked or briefly full
/// database gets about 2.6 s to recover before the writes are given up.
const COMMIT_RETRIES: [Duration; 4] =
    [Duration::from_millis(20), Duration::from_millis(100), Duration::from_millis(500), Duration::from_secs(2)];

/// Lost batches remembered for callers still to ask about them.
const LOST_REMEMBERED: usize = 64;

/// One queued write.
// Nearly every write is an event (larger since objects keep their key order):
// boxing them would add an allocation to each to save bytes on rare cache puts.
#[allow(clippy::large_enum_variant)]
pub enum Write {
    /// A recorded event.
    Event(Event),
    /// A cached task result.
    CachePut { tenant: String, key: String, result: Arc<str>, expires: Option<DateTime<Utc>> },
}

/// Timestamps as stored: RFC 3339 in UTC with microseconds, so text order is time order.
pub fn timestamp(time: DateTime<Utc>) -> String {
    let mut text = String::with_capacity(27);
    push_timestamp(&mut text, time);
    text
}

/// Appends `time` as [`timestamp`] writes it.
pub fn push_timestamp(out: &mut String, time: DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    // A task run writes four or five of these: chrono's general formatter
    // cost about 1,000 instructions each (callgrind), this about a tenth.
    let (date, clock) = (time.date_naive(), time.time());
    let (year, nanos) = (date.year(), clock.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // Years past four digits, and leap seconds: chrono knows how.
        out.push_str(&time.to_rfc3339_opts(SecondsFormat::Micros, true));
        return;
    }
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for position in (at..at + width).rev() {
            text[position] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, date.month());
    put(8, 2, date.day());
    put(11, 2, clock.hour());
    put(14, 2, clock.minute());
    put(17, 2, clock.second());
    put(20, 6, nanos / 1000);
    out.push_str(std::str::from_utf8(&text).expect("digits and separators are ASCII"));
}

struct Shared {
    queue: Mutex<Vec<Write>>,
    /// The last committed batch's buffer, emptied, to become the queue
    /// again: a queue started from nothing grew by reallocation and copying
    /// its large writes, on the runner's thread, about eight times a batch.
    spare: Mutex<Vec<Write>>,
    connection: Mutex<Connection>,
    submitted: AtomicU64,
    committed: AtomicU64,
    /// Transactions committed, for the checkpoint schedule.
    transactions: AtomicU64,
    events: broadcast::Sender<Arc<Event>>,
    stopping: AtomicBool,
    wake: Condvar,
    /// Sequence ranges of the latest batches that could not be committed, and why.
    lost: Mutex<Vec<(Range<u64>, String)>>,
    /// Why the latest commit failed; cleared by the next that succeeds.
    failing: Mutex<Option<String>>,
    /// Signalled whenever the write connection is released.
    released: Notify,
}

/// The write connection, held; its release wakes those awaiting it.
struct Held<'a> {
    connection: Option<MutexGuard<'a, Connection>>,
    shared: &'a Shared,
}

impl Shared {
    fn hold(&self) -> Held<'_> {
        Held { connection: Some(self.connection.lock().expect("connection lock")), shared: self }
    }

    /// The connection if nobody holds it now.
    fn try_hold(&self) -> Option<Held<'_>> {
        match self.connection.try_lock() {
            Ok(connection) => Some(Held { connection: Some(connection), shared: self }),
            Err(TryLockError::WouldBlock) => None,
            Err(TryLockError::Poisoned(_)) => panic!("connection lock poisoned"),
        }
    }
}

impl std::ops::Deref for Held<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.connection.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.connection.as_mut().expect("held until dropped")
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        drop(self.connection.take());
        self.shared.released.notify_waiters();
    }
}

/// The write side of the store.
pub struct WriterHandle {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WriterHandle {
    /// Takes the write connection and starts the background committer,
    /// which checkpoints on `checkpointer` (a second connection to the same
    /// file); the write connection's automatic checkpoints are turned off.
    pub fn start(connection: Connection, checkpointer: Connection) -> rusqlite::Result<Self> {
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        // A commit's own work runs in a savepoint, whose journal of the pages
        // it changes spilled past 64 KiB into a temporary file: a run's
        // creation, claim and start wrote about 60 KiB there (strace).
        connection.pragma_update(None, "temp_store", "MEMORY")?;
        let (events, _) = broadcast::channel(16_384);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            spare: Mutex::new(Vec::new()),
            connection: Mutex::new(connection),
            submitted: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            events,
            stopping: AtomicBool::new(false),
            wake: Condvar::new(),
            lost: Mutex::default(),
            failing: Mutex::default(),
            released: Notify::new(),
        });
        let background = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-store-writer".into())
            .spawn(move || background_commits(&background, &checkpointer))
            .expect("spawning the store writer");
        Ok(Self { shared, thread: Some(thread) })
    }

    /// Queues a write; returns its sequence number.
    pub fn send(&self, write: Write) -> u64 {
        let mut queue = self.shared.queue.lock().expect("queue lock");
        queue.push(write);
        self.wake_if_full(queue.len() - 1, queue.len());
        self.shared.submitted.fetch_add(1, Ordering::SeqCst)
    }

    /// Queues writes next to each other, so one transaction commits them all or none.
    pub fn send_all(&self, writes: impl IntoIterator<Item = Write>) -> Vec<u64> {
        let mut queue = self.shared.queue.lock().expect("queue lock");
        let before = queue.len();
        let numbers = writes
            .into_iter()
            .map(|write| {
                queue.push(write);
                self.shared.submitted.fetch_add(1, Ordering::SeqCst)
            })
            .collect();
        self.wake_if_full(before, queue.len());
        numbers
    }

    /// Wakes the background thread when the queue, from `before` to `after`
    /// writes, just reached [`WAKE_AT_QUEUED`]: once per filling, since a
    /// notification is a system call.
    fn wake_if_full(&self, before: usize, after: usize) {
        if before < WAKE_AT_QUEUED && after >= WAKE_AT_QUEUED {
            self.shared.wake.notify_one();
        }
    }

    /// Makes every write queued so far durable, committing it here if no
    /// one else already has (or giving up on it: see [`Self::failure`]).
    pub fn commit_now(&self) {
        commit_until(&self.shared, self.shared.submitted.load(Ordering::SeqCst));
    }

    /// [`Self::commit_now`] for an async caller: done here and now when the
    /// connection is free (`Ok`); else nothing is done, and the `Err` holds
    /// the target that [`Self::committed_until`] awaits.
    pub fn try_commit_now(&self) -> Result<(), u64> {
        let target = self.shared.submitted.load(Ordering::SeqCst);
        if self.shared.committed.load(Ordering::SeqCst) >= target {
            return Ok(());
        }
        match self.shared.try_hold() {
            Some(mut held) => {
                commit_queued(&self.shared, &mut held, target);
                Ok(())
            }
            None => Err(target),
        }
    }

    /// Commits every write queued so far and, in the same transaction,
    /// `work`, here and now, if nobody holds the write connection; `None`
    /// if somebody does (nothing is done: the caller commits the usual way).
    /// `work` also returns the events it recorded itself, which reach
    /// watchers with the commit as queued ones do.
    /// `Some(Err)`: the queued writes were lost (see [`Self::failure`]).
    /// `Some(Ok(Err))`: they are committed, but `work` failed (its part is
    /// rolled back, and logged); why.
    pub fn try_commit_with<T>(
        &self,
        work: impl FnMut(&Connection) -> rusqlite::Result<(T, Vec<Event>)>,
    ) -> Option<Result<Result<T, String>, String>> {
        let target = self.shared.submitted.load(Ordering::SeqCst);
        let mut held = self.shared.try_hold()?;
        Some(commit_held_with(&self.shared, &mut held, target, work))
    }

    /// [`Self::try_commit_with`] that waits for the write connection: one
    /// transaction for the queued writes and `work`, where committing them
    /// first and then `work` took two. An error says why `work` is not
    /// committed (it failed, or the whole commit did).
    pub fn commit_with<T>(
        &self,
        work: impl FnMut(&Connection) -> rusqlite::Result<(T, Vec<Event>)>,
    ) -> Result<T, String> {
        let target = self.shared.submitted.load(Ordering::SeqCst);
        let mut held = self.shared.hold();
        commit_held_with(&self.shared, &mut held, target, work)?
    }

    /// Resolves once the first `target` writes are durable, committing them
    /// when the connection is free, without ever blocking the executor on it.
    pub fn committed_until(&self, target: u64) -> impl std::future::Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        async move {
            loop {
                if shared.committed.load(Ordering::SeqCst) >= target {
                    return;
                }
                let released = shared.released.notified();
                let mut released = std::pin::pin!(released);
                // Registered before looking, so a release in between is not missed.
                released.as_mut().enable();
                if let Some(mut held) = shared.try_hold() {
                    commit_queued(&shared, &mut held, target);
                    return;
                }
                released.await;
            }
        }
    }

    /// Makes every write queued so far durable; awaits a busy connection
    /// rather than blocking the executor thread on it.
    pub async fn commit_now_async(&self) {
        if let Err(target) = self.try_commit_now() {
            self.committed_until(target).await;
        }
    }

    /// Makes the writes numbered `writes` durable; an error says some were lost.
    pub fn commit_writes(&self, writes: &[u64]) -> Result<(), String> {
        let Some(last) = writes.iter().max() else { return Ok(()) };
        commit_until(&self.shared, last + 1);
        let lost = self.shared.lost.lock().expect("lost lock");
        match lost.iter().find(|(range, _)| writes.iter().any(|write| range.contains(write))) {
            Some((_, why)) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// Why the latest commit failed, while the store is failing.
    pub fn failure(&self) -> Option<String> {
        self.shared.failing.lock().expect("failing lock").clone()
    }

    /// Runs `work` in a transaction on the write connection, after every
    /// queued write, for writes whose outcome the caller needs.
    pub fn transaction<T>(&self, work: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        self.commit_now();
        let mut connection = self.shared.hold();
        let tx = connection.transaction()?;
        let value = work(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Committed events, as they are committed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.shared.events.subscribe()
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.commit_now();
    }
}

/// Commits until at least `target` writes are durable, holding the
/// connection only when they are not yet.
fn commit_until(shared: &Shared, target: u64) {
    if shared.committed.load(Ordering::SeqCst) < target {
        commit_queued(shared, &mut shared.hold(), target);
    }
}

/// Commits on `connection` until at least `target` writes are durable.
fn commit_queued(shared: &Shared, connection: &mut Connection, target: u64) {
    let _ = commit_queued_with(shared, connection, target, None);
}

/// Work done in the transaction of a group commit, after its writes; the
/// events it recorded, for watchers once committed.
type Extra<'f> = dyn FnMut(&Connection) -> rusqlite::Result<Vec<Event>> + 'f;

/// [`commit_queued`], with `extra` in the same transaction: in a savepoint,
/// so its failure (logged) never costs the queued writes. An error when the
/// queued writes were lost; else whether `extra` was committed.
fn commit_queued_with(
    shared: &Shared,
    connection: &mut Connection,
    target: u64,
    mut extra: Option<&mut Extra<'_>>,
) -> Result<bool, String> {
    // Whoever held the connection before may have committed ours already.
    let mut batch = if shared.committed.load(Ordering::SeqCst) >= target {
        Vec::new()
    } else {
        let spare = std::mem::take(&mut *shared.spare.lock().expect("spare lock"));
        std::mem::replace(&mut *shared.queue.lock().expect("queue lock"), spare)
    };
    if batch.is_empty() {
        // No write to lose: a failure of `extra` alone is its own (logged).
        let Some(extra) = extra else { return Ok(false) };
        let alone = connection.transaction().and_then(|tx| {
            let events = run_extra(&tx, extra)?;
            tx.commit()?;
            Ok(events)
        });
        return Ok(match alone {
            Ok(events) => {
                announce(shared, events);
                true
            }
            Err(err) => {
                tracing::warn!("work committed alone failed: {err}");
                false
            }
        });
    }
    let count = batch.len() as u64;
    let first = shared.committed.load(Ordering::SeqCst);
    shared.transactions.fetch_add(1, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let mut outcome = commit(connection, &batch, extra.as_deref_mut());
    for wait in COMMIT_RETRIES {
        if outcome.is_ok() || shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(wait);
        outcome = commit(connection, &batch, extra.as_deref_mut());
    }
    let result = outcome
        .as_ref()
        .map(Option::is_some)
        .map_err(|e| format!("the state store could not record {count} writes: {e}"));
    observe_commit(started, count);
    match outcome {
        Ok(extra_events) => {
            *shared.failing.lock().expect("failing lock") = None;
            // Watchers get the events before the count moves, so whoever
            // waited finds every event it covers already in its channel.
            let queued = batch.drain(..).filter_map(|write| match write {
                Write::Event(event) => Some(event),
                Write::CachePut { .. } => None,
            });
            announce(shared, queued.chain(extra_events.unwrap_or_default()));
            recycle(shared, batch);
        }
        Err(err) => {
            // Waiters must not hang on a broken database: the writes are
            // given up, no watcher sees them, and whoever asks is told.
            let why = format!("the state store could not record {count} writes: {err}");
            tracing::error!("{why}");
            let mut lost = shared.lost.lock().expect("lost lock");
            if lost.len() == LOST_REMEMBERED {
                lost.remove(0);
            }
            lost.push((first..first + count, why.clone()));
            *shared.failing.lock().expect("failing lock") = Some(why);
        }
    }
    shared.committed.fetch_add(count, Ordering::SeqCst);
    result
}

/// [`commit_queued_with`] for `work` that returns a value: an error when
/// the queued writes were lost; else `work`'s value, or why it is not
/// committed (it failed, and was rolled back alone).
fn commit_held_with<T>(
    shared: &Shared,
    connection: &mut Connection,
    target: u64,
    mut work: impl FnMut(&Connection) -> rusqlite::Result<(T, Vec<Event>)>,
) -> Result<Result<T, String>, String> {
    // The last try's outcome: a commit that fails is tried again, `work` with it.
    let mut last = None;
    let mut extra = |connection: &Connection| -> rusqlite::Result<Vec<Event>> {
        let (outcome, events) = match work(connection) {
            Ok((done, events)) => (Ok(done), Ok(events)),
            Err(err) => (Err(err.to_string()), Err(err)),
        };
        last = Some(outcome);
        events
    };
    let committed = commit_queued_with(shared, connection, target, Some(&mut extra))?;
    Ok(match last {
        Some(Ok(value)) if committed => Ok(value),
        Some(Err(why)) => Err(why),
        _ => Err("the work was not committed".into()),
    })
}

/// Hands committed events to watchers; with none, drops them without
/// sharing each first (an allocation per event, on the writer's thread).
fn announce(shared: &Shared, events: impl IntoIterator<Item = Event>) {
    if shared.events.receiver_count() == 0 {
        return;
    }
    for event in events {
        let _ = shared.events.send(Arc::new(event));
    }
}

/// Queued writes a recycled buffer may hold room for: a larger batch's
/// buffer (a burst) is freed rather than kept.
const SPARE_CAPACITY: usize = 4 * WAKE_AT_QUEUED;

/// Keeps `batch`'s buffer, emptied, for the queue after next.
fn recycle(shared: &Shared, mut batch: Vec<Write>) {
    batch.clear();
    if batch.capacity() <= SPARE_CAPACITY {
        *shared.spare.lock().expect("spare lock") = batch;
    }
}

/// Runs `extra` in a savepoint of `tx`: rolled back alone, and logged, if it fails.
fn run_extra(tx: &Transaction<'_>, extra: &mut Extra<'_>) -> rusqlite::Result<Vec<Event>> {
    tx.execute_batch("SAVEPOINT extra")?;
    match extra(tx) {
        Ok(events) => {
            tx.execute_batch("RELEASE extra")?;
            Ok(events)
        }
        Err(err) => {
            tracing::warn!("work committed with queued writes failed, and was rolled back: {err}");
            tx.execute_batch("ROLLBACK TO extra; RELEASE extra")?;
            Err(err)
        }
    }
}

/// Times a group commit and counts its writes (`sluice_store_commit_*{backend="sqlite"}`).
fn observe_commit(started: std::time::Instant, writes: u64) {
    let metrics = crate::observe::metrics();
    metrics.sqlite_commit_seconds.observe(started.elapsed().as_secs_f64());
    metrics.sqlite_commit_writes.observe(writes as f64);
}

fn background_commits(shared: &Shared, checkpointer: &Connection) {
    let mut schedule = CheckpointSchedule::new();
    // A queue that filled up while the last commit ran is committed at
    // once: its wake-up came when nobody was waiting for it.
    let not_full = |queue: &mut Vec<Write>| queue.len() < WAKE_AT_QUEUED && !shared.stopping.load(Ordering::SeqCst);
    let mut idle = shared.queue.lock().expect("queue lock");
    while !shared.stopping.load(Ordering::SeqCst) {
        idle = shared.wake.wait_timeout_while(idle, BACKGROUND_PERIOD, not_full).expect("queue lock").0;
        let queued = !idle.is_empty();
        drop(idle);
        if queued {
            commit_until(shared, shared.submitted.load(Ordering::SeqCst));
        }
        if schedule.due(shared.transactions.load(Ordering::Relaxed)) {
            checkpoint(checkpointer, &shared.connection, WAL_FRAMES_BEFORE_HOLDING_THE_WRITER);
            // It may have held the write connection.
            shared.released.notify_waiters();
        }
        idle = shared.queue.lock().expect("queue lock");
    }
}

/// Commits `batch`, and `extra` after it in a savepoint; `extra`'s events
/// when it is in the commit.
fn commit(
    connection: &mut Connection,
    batch: &[Write],
    extra: Option<&mut Extra<'_>>,
) -> rusqlite::Result<Option<Vec<Event>>> {
    let tx = connection.transaction()?;
    let folded = fold(batch, History::InRow);
    // Task runs inserted with their folded states: those states are in their history already.
    let mut written = FxHashSet::default();
    for (position, write) in batch.iter().enumerate() {
        match write {
            Write::Event(Event::TaskRunCreated(run)) if folded.rows.contains_key(&run.id) => {
                if insert_folded_task_run(&tx, run, &folded.rows[&run.id])? {
                    written.insert(run.id);
                }
            }
            Write::Event(Event::State(state)) if state.kind == RunKind::Task && written.contains(&state.run) => {}
            Write::Event(Event::State(state))
                if state.kind == RunKind::Task && folded.updates.contains_key(&state.run) =>
            {
                let update = &folded.updates[&state.run];
                if update.first == position {
                    update_task_run(&tx, state.run, &update.change)?;
                }
            }
            write => apply(&tx, write)?,
        }
    }
    // Its failure is its own: the writes are committed all the same.
    let extra_events = extra.and_then(|extra| run_extra(&tx, extra).ok());
    tx.commit()?;
    Ok(extra_events)
}

/// Inserts a task run with the row its states in the batch leave; false if it was already there.
fn insert_folded_task_run(tx: &Transaction<'_>, run: &TaskRunRecord, row: &FoldedRow) -> rusqlite::Result<bool> {
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO task_runs (id, flow_run, task, name, input, created, state, message, result, attempts,
             ended, call_position, call_batch, call_attempt, history) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
             ?11, ?12, ?13, ?14, ?15)",
        )?
        .execute(params![
            run.id.to_string(),
            run.flow_run.to_string(),
            run.task,
            run.name,
            run.input,
            timestamp(run.created),
            row.state,
            row.message,
            row.result.as_deref(),
            row.attempts,
            row.ended.map(timestamp),
            run.call.map(|c| c.position as i64),
            run.call.map(|c| c.batch as i64),
            run.call.map(|c| c.flow_attempt),
            row.history,
        ])?;
    Ok(inserted == 1)
}

/// Moves task run `?1` to state `?2` (message `?3`, result `?4` if any,
/// attempt `?5`, ended at `?6` if it ends), appending history entries `?7`,
/// unless it has ended: a run that has ended (say, marked `Crashed` when its
/// worker went silent) keeps its end, and late reports of a lost worker are dropped.
const TASK_STATE_SQL: &str = "UPDATE task_runs SET state = ?2, message = ?3, result = COALESCE(?4, result),
     attempts = MAX(attempts, ?5), ended = ?6, history = history || ?7 WHERE id = ?1 AND ended IS NULL";

/// Makes one update of a task run's states folded from a batch.
fn update_task_run(tx: &Transaction<'_>, run: RunId, change: &FoldedRow) -> rusqlite::Result<()> {
    tx.prepare_cached(TASK_STATE_SQL)?.execute(params![
        run.to_string(),
        change.state,
        change.message,
        change.result.as_deref(),
        change.attempts,
        change.ended.map(timestamp),
        change.history,
    ])?;
    Ok(())
}

/// SQL for the tags of the deployment of flow run `f` (a row of
/// `flow_runs`), looked up by key; `[]` for a run of no deployment. The
/// migrations write the same lookup in their triggers, frozen as applied.
macro_rules! tags_of_run_f {
    () => {
        "COALESCE((SELECT json_extract(d.body, '$.tags') FROM deployments d
                   WHERE d.tenant = f.tenant AND d.flow = substr(f.deployment, 1, instr(f.deployment, '/') - 1)
                   AND d.name = substr(f.deployment, instr(f.deployment, '/') + 1)), '[]')"
    };
}

/// Adds the event of flow run `?1`'s state `?2` (message `?3`, attempt
/// `?4`, at `?5`) to its tenant's log, with its flow, deployment and the
/// deployment's tags: what the `flow_states_kept_in_their_run` trigger
/// records for the statements that go through it.
const STATE_EVENT_SQL: &str = concat!(
    "INSERT INTO events (tenant, name, time, flow_run, flow, deployment, tags, payload)
     SELECT f.tenant, 'sluice.flow-run.' || ?2, ?5, f.id, f.flow, f.deployment, ",
    tags_of_run_f!(),
    ", json_object('state', ?2, 'message', ?3, 'attempt', ?4) FROM flow_runs f WHERE f.id = ?1"
);

/// Adds an emitted event to its flow run's tenant's log, with the run's
/// flow, deployment and the deployment's tags.
const EMITTED_SQL: &str = concat!(
    "INSERT INTO events (tenant, name, time, flow_run, task_run, flow, deployment, tags, payload)
     SELECT f.tenant, ?3, ?4, f.id, ?2, f.flow, f.deployment, ",
    tags_of_run_f!(),
    ", ?5 FROM flow_runs f WHERE f.id = ?1"
);

fn apply(tx: &Connection, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::Event(event) => apply_event(tx, event),
        Write::CachePut { tenant, key, result, expires } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO task_cache (tenant, key, result, expires) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![tenant, key, result.as_ref(), expires.map(timestamp)])?;
            Ok(())
        }
    }
}

/// Records `event` on `tx`, in its transaction, as a commit of it queued does.
pub(super) fn apply_event(tx: &Connection, event: &Event) -> rusqlite::Result<()> {
    match event {
        Event::FlowRunCreated(run) => {
            tx.prepare_cached(
                "INSERT INTO flow_runs (id, name, flow, deployment, parent, artifact, parameters, created, scheduled,
                 tenant, call_position, call_batch, call_attempt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                 COALESCE((SELECT tenant FROM flow_runs WHERE id = ?5), ?10, 'default'), ?11, ?12, ?13)
                 ON CONFLICT (id) DO UPDATE SET ended = NULL, call_attempt = excluded.call_attempt
                 WHERE flow_runs.parent = excluded.parent AND excluded.call_attempt > flow_runs.call_attempt",
            )?
            .execute(params![
                run.id.to_string(),
                run.name,
                run.flow,
                run.deployment,
                run.parent.map(|p| p.to_string()),
                run.artifact_digest,
                run.parameters.to_string(),
                timestamp(run.created),
                run.scheduled.map(timestamp),
                run.tenant,
                run.call.map(|c| c.position as i64),
                run.call.map(|c| c.batch as i64),
                run.call.map(|c| c.flow_attempt),
            ])?;
        }
        Event::TaskRunCreated(run) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO task_runs (id, flow_run, task, name, input, created, call_position, call_batch,
                 call_attempt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                run.id.to_string(),
                run.flow_run.to_string(),
                run.task,
                run.name,
                run.input,
                timestamp(run.created),
                run.call.map(|c| c.position as i64),
                run.call.map(|c| c.batch as i64),
                run.call.map(|c| c.flow_attempt),
            ])?;
        }
        Event::State(state) => {
            let run = state.run.to_string();
            let time = timestamp(state.time);
            let ended = state.state.is_terminal().then_some(time.as_str());
            let result = state.result.as_deref();
            let entry = super::history::entry(state.state.name(), state.message.as_deref(), state.attempt, &time);
            // A run that has ended (say, marked Crashed when its worker went
            // silent) keeps its end: late reports of a lost worker are dropped.
            match state.kind {
                RunKind::Flow => {
                    let started = state.state.is_running().then_some(time.as_str());
                    let updated = tx
                        .prepare_cached(
                            // A run paused for input is taken by nobody until it is resumed.
                            "UPDATE flow_runs SET state = ?2, message = ?3, result = COALESCE(?4, result),
                             started = COALESCE(started, ?5), ended = ?6, history = history || ?7,
                             claimed_by = CASE WHEN ?2 = 'Paused' THEN NULL ELSE claimed_by END,
                             queue = CASE WHEN ?2 = 'Paused' THEN NULL ELSE queue END WHERE id = ?1 AND ended IS NULL",
                        )?
                        .execute(params![run, state.state.name(), state.message, result, started, ended, entry])?;
                    if updated == 1 {
                        tx.prepare_cached(STATE_EVENT_SQL)?.execute(params![
                            run,
                            state.state.name(),
                            state.message,
                            state.attempt,
                            time
                        ])?;
                    }
                }
                RunKind::Task => {
                    tx.prepare_cached(TASK_STATE_SQL)?.execute(params![
                        run,
                        state.state.name(),
                        state.message,
                        result,
                        state.attempt,
                        ended,
                        entry
                    ])?;
                }
            }
        }
        Event::Log(log) => {
            tx.prepare_cached(
                "INSERT INTO logs (flow_run, task_run, level, message, time) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                log.flow_run.to_string(),
                log.task_run.map(|t| t.to_string()),
                log.level.name(),
                log.message,
                timestamp(log.time)
            ])?;
        }
        Event::Emitted(emitted) => {
            // The run decides the tenant, flow and deployment: a worker names only the run.
            tx.prepare_cached(EMITTED_SQL)?.execute(params![
                emitted.flow_run.to_string(),
                emitted.task_run.map(|t| t.to_string()),
                emitted.name,
                timestamp(emitted.time),
                emitted.payload.to_string()
            ])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::core::ids::RunId;
    use crate::core::record::{Event, LogLevel, LogRecord, Recorder};
    use crate::store::{SqliteStore, StateStore};
    use chrono::Utc;

    #[test]
    fn timestamps_are_what_chrono_writes() {
        use chrono::{DateTime, SecondsFormat, TimeZone};
        let mut times: Vec<DateTime<Utc>> = vec![
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(2024, 2, 29, 12, 34, 56).unwrap() + chrono::Duration::nanoseconds(999_999_999),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 1, 0, 0, 0).unwrap(),
            Utc::now(),
        ];
        let mut random = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
        for _ in 0..10_000 {
            let micros = rand::Rng::random_range(&mut random, 0..253_402_300_800_000_000);
            times.push(DateTime::from_timestamp_micros(micros).unwrap());
        }
        for time in times {
            assert_eq!(super::timestamp(time), time.to_rfc3339_opts(SecondsFormat::Micros, true), "{time:?}");
        }
    }

    fn log(run: RunId, message: String) -> Event {
        Event::Log(LogRecord { flow_run: run, task_run: None, level: LogLevel::Info, message, time: Utc::now() })
    }

    #[test]
    fn a_commit_the_database_refuses_reaches_no_watcher_and_is_reported_until_one_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("sluice.db")).unwrap();
        let mut watcher = store.subscribe();
        let run = RunId::new();
        store.record_durably(&[log(run, "fits".into())]).unwrap();
        assert!(watcher.try_recv().is_ok(), "a committed event reaches the watcher");

        // A full disk: the file may not grow, and a megabyte of logs needs it to.
        let pages: u64 = store.query(|c| c.query_row("PRAGMA page_count", [], |row| row.get(0))).unwrap();
        store.limit_pages(pages);
        let big: Vec<Event> = (0..256).map(|i| log(run, format!("{i} {}", "x".repeat(4096)))).collect();
        let refused = store.record_durably(&big).unwrap_err();
        assert!(refused.to_string().contains("could not record"), "{refused}");
        assert!(store.failure().is_some(), "the store says it is failing");
        assert!(watcher.try_recv().is_err(), "no uncommitted event reaches a watcher");
        assert!(store.logs(&run.to_string(), None).unwrap().len() == 1, "nothing of the batch was written");

        store.limit_pages(1 << 30);
        store.record_durably(&[log(run, "after".into())]).unwrap();
        assert_eq!(store.failure(), None, "a successful commit clears the failure");
        let Ok(event) = watcher.try_recv() else { panic!("the next committed event reaches the watcher") };
        assert!(matches!(&*event, Event::Log(l) if l.message == "after"));
    }
}
