//! Runs the selected checks concurrently, each under the run's deadline.
//!
//! Dependencies (`needs`) are awaited, not serialised: every check starts at
//! once and waits only for what it needs. A check that only reads does not even
//! wait: it runs beside its needs, so its queries travel in the same round trip
//! as `postgres.connect`'s first statement, and its result counts only if they
//! pass (a check that writes, with `--allow-writes`, waits). A check whose
//! dependency did not pass is `skip`; a check that runs out of time or panics is
//! a failure of that check, never of the run. Results come back in manifest order.
//!
//! One root cause, one failure: when every check has finished, a failure that
//! rests on a premise another check of the run reported failing ([`Premise`]) is
//! turned into `skip` "see <that check>" — decided by the cause each check
//! names, not by the order the checks ran in.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, join_all};

use crate::check::{Causes, Ctx, Declared, Outcome, Premise};
use crate::error::UsageError;
use crate::manifest::CheckDecl;
use crate::probe::activity::Activity;
use crate::report::{CheckResult, Ending, Status};

/// Which checks run: `--only` (plus what they need) minus `--skip`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    left_out: HashMap<String, LeftOut>,
}

/// Why a check does not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeftOut {
    /// `--only` did not select it (nor anything that needs it).
    NotSelected,
    /// `--skip` named it.
    Skipped,
}

impl LeftOut {
    fn message(self) -> &'static str {
        match self {
            LeftOut::NotSelected => "not selected by --only",
            LeftOut::Skipped => "skipped by --skip",
        }
    }

    fn ending(self) -> Ending {
        match self {
            LeftOut::NotSelected => Ending::NotSelected,
            LeftOut::Skipped => Ending::SkippedByFlag,
        }
    }
}

impl Selection {
    pub fn new(decls: &[CheckDecl], only: &[String], skip: &[String]) -> Result<Selection, UsageError> {
        let known: HashSet<&str> = decls.iter().map(|d| d.id.as_str()).collect();
        for id in only.iter().chain(skip) {
            if !known.contains(id.as_str()) {
                return Err(UsageError::new(format!("unknown check id `{id}` (see `mockmate-diag list` for the ids)")));
            }
        }
        let mut run: HashSet<String> = HashSet::new();
        if only.is_empty() {
            run.extend(decls.iter().map(|d| d.id.clone()));
        } else {
            // A selected check brings what it needs (it cannot be judged without it)
            // and what it runs after (it reads their results).
            let by_id: HashMap<&str, &CheckDecl> = decls.iter().map(|d| (d.id.as_str(), d)).collect();
            let mut stack: Vec<&str> = only.iter().map(String::as_str).collect();
            while let Some(id) = stack.pop() {
                if run.insert(id.to_string())
                    && let Some(d) = by_id.get(id)
                {
                    stack.extend(d.needs.iter().chain(&d.after).map(String::as_str));
                }
            }
        }
        let mut left_out = HashMap::new();
        for d in decls {
            if skip.contains(&d.id) {
                left_out.insert(d.id.clone(), LeftOut::Skipped);
            } else if !run.contains(&d.id) {
                left_out.insert(d.id.clone(), LeftOut::NotSelected);
            }
        }
        Ok(Selection { left_out })
    }

    #[cfg(test)]
    pub fn all() -> Selection {
        Selection::default()
    }

    /// Whether `id` runs (is neither deselected nor skipped).
    pub fn runs(&self, id: &str) -> bool {
        !self.left_out.contains_key(id)
    }

    /// How many of `decls` run.
    pub fn count(&self, decls: &[CheckDecl]) -> usize {
        decls.iter().filter(|d| self.runs(&d.id)).count()
    }

    fn left_out(&self, id: &str) -> Option<LeftOut> {
        self.left_out.get(id).copied()
    }
}

type SharedResult = Shared<BoxFuture<'static, Ran>>;

/// A finished check: its result, and what the engine needs to settle causes.
#[derive(Clone)]
struct Ran {
    result: CheckResult,
    premises: Vec<Premise>,
    reports: Vec<Premise>,
}

/// Sees checks start and finish (the terminal progress line).
pub trait Observer: Send + Sync {
    fn started(&self, id: &str);
    fn finished(&self, result: &CheckResult);
}

/// Sees nothing (no terminal, a machine format, or tests).
pub struct Quiet;

impl Observer for Quiet {
    fn started(&self, _: &str) {}
    fn finished(&self, _: &CheckResult) {}
}

/// Runs `decls` under `selection`, telling `observer` as checks start and
/// finish; results in manifest order.
pub async fn run(
    decls: &[CheckDecl],
    selection: &Selection,
    ctx: Arc<Ctx>,
    observer: Arc<dyn Observer>,
) -> Vec<CheckResult> {
    // Before anything awaits: checks that will run start their slow set-up (their
    // own connections), so it overlaps the shared connects instead of following them.
    for d in decls.iter().filter(|d| selection.runs(&d.id)) {
        d.check.warm(&ctx);
    }
    let by_id: HashMap<&str, &CheckDecl> = decls.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut futures: HashMap<String, SharedResult> = HashMap::new();
    // Build in dependency order (the manifest loader rejected cycles).
    fn build(
        id: &str,
        by_id: &HashMap<&str, &CheckDecl>,
        selection: &Selection,
        ctx: &Arc<Ctx>,
        observer: &Arc<dyn Observer>,
        futures: &mut HashMap<String, SharedResult>,
    ) -> Option<SharedResult> {
        if let Some(f) = futures.get(id) {
            return Some(f.clone());
        }
        let decl = (*by_id.get(id)?).clone();
        let deps: Vec<(String, SharedResult)> = decl
            .needs
            .iter()
            .filter_map(|n| build(n, by_id, selection, ctx, observer, futures).map(|f| (n.clone(), f)))
            .collect();
        let after: Vec<SharedResult> =
            decl.after.iter().filter_map(|a| build(a, by_id, selection, ctx, observer, futures)).collect();
        let left_out = selection.left_out(id);
        let ctx = ctx.clone();
        let finished = ctx.results.clone();
        let observer = observer.clone();
        let fut = async move {
            if let Some(left_out) = left_out {
                return not_run(&decl, Outcome::skip(left_out.message()), left_out.ending());
            }
            // `after`: starts once those have finished, whatever their status
            // (their results are in `ctx.results` by then).
            join_all(after).await;
            // A check that only reads starts now, beside what it needs; its result
            // counts only if they pass (see `Check::only_reads`).
            let early = (!deps.is_empty() && decl.check.only_reads()).then(|| Running::spawn(&decl, &ctx));
            let results = join_all(
                deps.into_iter().map(|(n, f)| f.map(move |r| (n, r.result.status, r.result.ending.interrupted()))),
            )
            .await;
            if let Some((need, status, interrupted)) = results.into_iter().find(|(_, s, _)| *s != Status::Pass) {
                if let Some(early) = early {
                    early.abandon();
                }
                // A need the interrupt stopped: this check was interrupted too.
                if interrupted {
                    return finish(&decl, Outcome::interrupted(None), Duration::ZERO);
                }
                let why = format!("needs {need}, which {}", status.past_tense());
                return not_run(&decl, Outcome::skip(why), Ending::Blocked { need, see: None });
            }
            observer.started(&decl.id);
            let ran = early.unwrap_or_else(|| Running::spawn(&decl, &ctx)).finish(&decl).await;
            observer.finished(&ran.result);
            ran
        }
        .map(move |ran| {
            finished.record(&ran.result);
            ran
        })
        .boxed()
        .shared();
        futures.insert(id.to_string(), fut.clone());
        Some(fut)
    }
    let ordered: Vec<SharedResult> =
        decls.iter().filter_map(|d| build(&d.id, &by_id, selection, &ctx, &observer, &mut futures)).collect();
    settle(join_all(ordered).await)
}

/// One root cause, one failure: a failure resting on a premise that another
/// check of the run reported (did not pass) becomes `skip` "see <root>", its
/// details kept; `root` is where the chain of causes ends (`postgres.connect`
/// rests on `env.required`'s missing variable: its dependents see `env.required`).
/// A check skipped because a need failed, whose need was settled so, says so.
fn settle(ran: Vec<Ran>) -> Vec<CheckResult> {
    let failed = |r: &Ran| matches!(r.result.status, Status::Warn | Status::Fail);
    // The check a failure defers to: the first other one (manifest order) that did
    // not pass and reports one of its premises. Checks that each report a premise
    // they also rest on (several statements cut by one lost connection) share one
    // cause: the first of them owns it.
    let direct: Vec<Option<usize>> = ran
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if !failed(r) {
                return None;
            }
            r.premises.iter().find_map(|p| {
                let shared = r.reports.contains(p);
                ran.iter()
                    .enumerate()
                    .position(|(j, o)| j != i && (j < i || !shared) && failed(o) && o.reports.contains(p))
            })
        })
        .collect();
    // Follow the chain to its root; a cycle (never built by the kinds) redirects nothing.
    let root = |i: usize| -> Option<usize> {
        let mut seen = vec![i];
        let mut at = direct[i]?;
        while let Some(next) = direct[at] {
            if seen.contains(&next) || seen.contains(&at) {
                return None;
            }
            seen.push(at);
            at = next;
        }
        (!seen.contains(&at)).then_some(at)
    };
    let roots: Vec<Option<usize>> = (0..ran.len()).map(root).collect();
    let ids: Vec<String> = ran.iter().map(|r| r.result.id.clone()).collect();
    let mut results: Vec<CheckResult> = ran.iter().map(|r| r.result.clone()).collect();
    for (result, root) in results.iter_mut().zip(&roots) {
        if let Some(owner) = root {
            let owner = &ids[*owner];
            result.message = format!("see {owner}: {}", result.message);
            result.status = Status::Skip;
            result.hint = None;
            result.ending = Ending::Deferred { owner: owner.clone() };
        }
    }
    for result in &mut results {
        let Ending::Blocked { need, see } = &mut result.ending else { continue };
        let Some(j) = ids.iter().position(|id| id == need) else { continue };
        if let Some(owner) = roots[j] {
            let owner = ids[owner].clone();
            result.message = format!("needs {need}, which was skipped (see {owner})");
            *see = Some(owner);
        }
    }
    results
}

/// How long after `--timeout` the engine's own deadline fires.
const BACKSTOP_GRACE: Duration = Duration::from_millis(100);

/// One check running on its own task, under the deadline, catching panics.
struct Running {
    task: tokio::task::JoinHandle<Result<Outcome, tokio::time::error::Elapsed>>,
    deadline: Duration,
    started: Instant,
    /// Arms the deadline: sent when the check's needs have passed.
    arm: tokio::sync::oneshot::Sender<tokio::time::Instant>,
}

impl Running {
    fn spawn(decl: &CheckDecl, ctx: &Arc<Ctx>) -> Running {
        let deadline = ctx.timeout;
        let check = decl.check.clone();
        let ctx = ctx.clone();
        let (arm, armed) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
        // The probes give up at `deadline` with words naming the layer that hung
        // ("waiting for the server's reply to startup"); a short grace lets their
        // answer win the race against this generic backstop. The clock starts
        // when the needs have passed: a check started early beside a slow (but
        // successful) connect keeps its whole `--timeout`.
        // The check's own activity: what it waits on, for an interruption's words.
        let task = tokio::spawn(Activity::default().scope(async move {
            let run = check.run(&ctx);
            tokio::pin!(run);
            let from = tokio::select! {
                outcome = &mut run => return Ok(outcome),
                at = armed => at.unwrap_or_else(|_| tokio::time::Instant::now()),
            };
            tokio::time::timeout_at(from + deadline + BACKSTOP_GRACE, run).await
        }));
        Running { task, deadline, started: Instant::now(), arm }
    }

    /// A need failed: the result would not count. Its statements were queued
    /// whole (a unit is queued in one go), so stopping it leaves nothing open.
    fn abandon(self) {
        self.task.abort();
    }

    /// Its result. The duration counts from when the check's needs had passed
    /// (a check started early is not charged for the wait).
    async fn finish(self, decl: &CheckDecl) -> Ran {
        let needs_passed = Instant::now().max(self.started);
        // The task may have finished already: then nobody listens, and that is fine.
        let _ = self.arm.send(tokio::time::Instant::now());
        let outcome = match self.task.await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_elapsed)) => Outcome::problem(format!("timed out after {}", crate::probe::human(self.deadline)))
                .hint("the service did not answer in time: check it is up and reachable, or raise --timeout"),
            Err(join) if join.is_panic() => {
                let payload = join.into_panic();
                let msg = crate::redact::panic_message(&*payload);
                Outcome::fail(format!("internal error: the check panicked: {msg}"))
                    .hint("this is a bug in mockmate-diag: please report it with this output")
            }
            Err(_) => Outcome::fail("internal error: the check was cancelled"),
        };
        finish(decl, outcome, needs_passed.elapsed())
    }
}

fn finish(decl: &CheckDecl, outcome: Outcome, elapsed: Duration) -> Ran {
    let declared = Declared {
        id: &decl.id,
        needs: &decl.needs,
        kind: decl.kind,
        severity: decl.severity,
        title: &decl.title,
        hint: decl.hint.as_deref(),
    };
    let Causes { premises, reports } = (*outcome.causes).clone();
    Ran { result: outcome.into_result(&declared, elapsed), premises, reports }
}

/// A check the engine did not run, and why (`ending`), decided here.
fn not_run(decl: &CheckDecl, outcome: Outcome, ending: Ending) -> Ran {
    let mut ran = finish(decl, outcome, Duration::ZERO);
    ran.result.ending = ending;
    ran
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Check, KindDef};
    use crate::envctx::{EnvSet, EnvView};
    use crate::report::Severity;

    static TEST_KIND: KindDef =
        KindDef { name: "test.kind", title: "test", description: "test", build: |_| Err("not buildable".into()) };

    enum Behaviour {
        Pass,
        Problem,
        Panic,
        Sleep(Duration),
        /// Counts `warm` calls; passes.
        Warms(Arc<std::sync::atomic::AtomicUsize>),
        /// Answers this outcome (with its premises and reports).
        Answers(Outcome),
        /// Counts `run` calls, then passes; `only_reads` as given.
        Runs(Arc<std::sync::atomic::AtomicUsize>, bool),
        /// Sleeps, then passes and wakes `Waits` (a connect its readers share).
        Opens(Arc<tokio::sync::Notify>, Duration),
        /// Waits for `Opens`, then works this long, then passes (a reader of it).
        Waits(Arc<tokio::sync::Notify>, Duration),
    }

    impl Check for Behaviour {
        fn warm(&self, _ctx: &Ctx) {
            if let Behaviour::Warms(n) = self {
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }

        fn only_reads(&self) -> bool {
            !matches!(self, Behaviour::Runs(_, false))
        }

        fn run<'a>(&'a self, _ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
            async move {
                match self {
                    Behaviour::Runs(n, _) => {
                        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Outcome::pass("ran")
                    }
                    Behaviour::Pass | Behaviour::Warms(_) => Outcome::pass("ok"),
                    Behaviour::Problem => Outcome::problem("broken").hint("fix it"),
                    Behaviour::Panic => panic!("boom with postgres://u:hunter2@h/db"),
                    Behaviour::Sleep(d) => {
                        tokio::time::sleep(*d).await;
                        Outcome::pass("slept")
                    }
                    Behaviour::Answers(o) => o.clone(),
                    Behaviour::Opens(open, d) => {
                        tokio::time::sleep(*d).await;
                        open.notify_one();
                        Outcome::pass("open")
                    }
                    Behaviour::Waits(open, d) => {
                        open.notified().await;
                        tokio::time::sleep(*d).await;
                        Outcome::pass("read")
                    }
                }
            }
            .boxed()
        }
    }

    fn decl(id: &str, severity: Severity, needs: &[&str], b: Behaviour) -> CheckDecl {
        CheckDecl {
            id: id.into(),
            kind: &TEST_KIND,
            severity,
            needs: needs.iter().map(|s| s.to_string()).collect(),
            after: Vec::new(),
            title: id.into(),
            hint: None,
            check: Arc::new(b),
            origin: "test".into(),
        }
    }

    async fn run_all(decls: &[CheckDecl], timeout: Duration) -> Vec<CheckResult> {
        let ctx = Ctx::new(EnvView::new(Arc::new(EnvSet::default())), "test", timeout);
        run(decls, &Selection::all(), Arc::new(ctx), Arc::new(Quiet)).await
    }

    #[tokio::test]
    async fn severity_needs_timeouts_and_panics_become_results_in_manifest_order() {
        let decls = vec![
            decl("a.dependent", Severity::Fail, &["b.broken"], Behaviour::Pass),
            decl("b.broken", Severity::Warn, &[], Behaviour::Problem),
            decl("c.slow", Severity::Fail, &[], Behaviour::Sleep(Duration::from_secs(30))),
            decl("d.panics", Severity::Warn, &[], Behaviour::Panic),
            decl("e.fine", Severity::Fail, &["c.slow"], Behaviour::Pass),
            decl("f.after_fine", Severity::Fail, &["g.fine"], Behaviour::Pass),
            decl("g.fine", Severity::Fail, &[], Behaviour::Pass),
        ];
        let results = run_all(&decls, Duration::from_millis(200)).await;
        let ids: Vec<&str> = results.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a.dependent", "b.broken", "c.slow", "d.panics", "e.fine", "f.after_fine", "g.fine"]);
        let by = |id: &str| results.iter().find(|r| r.id == id).expect("present");
        assert_eq!(by("b.broken").status, Status::Warn);
        assert_eq!(by("b.broken").hint.as_deref(), Some("fix it"));
        assert_eq!(by("a.dependent").status, Status::Skip);
        assert_eq!(by("a.dependent").message, "needs b.broken, which warned");
        assert_eq!(by("c.slow").status, Status::Fail);
        assert_eq!(by("c.slow").message, "timed out after 200ms");
        assert_eq!(by("e.fine").status, Status::Skip);
        // A panic is the check's failure, whatever its severity.
        assert_eq!(by("d.panics").status, Status::Fail);
        assert!(
            by("d.panics").message.starts_with("internal error: the check panicked: boom"),
            "{}",
            by("d.panics").message
        );
        assert_eq!(by("f.after_fine").status, Status::Pass);
    }

    #[tokio::test]
    async fn only_brings_what_a_check_needs_and_skip_wins() {
        let decls = vec![
            decl("a", Severity::Fail, &[], Behaviour::Pass),
            decl("b", Severity::Fail, &["a"], Behaviour::Pass),
            decl("c", Severity::Fail, &[], Behaviour::Pass),
        ];
        let sel = Selection::new(&decls, &["b".into()], &[]).expect("valid");
        let ctx = Arc::new(Ctx::new(EnvView::new(Arc::new(EnvSet::default())), "test", Duration::from_secs(1)));
        let r = run(&decls, &sel, ctx.clone(), Arc::new(Quiet)).await;
        let statuses: Vec<Status> = r.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Status::Pass, Status::Pass, Status::Skip]);
        let sel = Selection::new(&decls, &["b".into()], &["a".into()]).expect("valid");
        let r = run(&decls, &sel, ctx, Arc::new(Quiet)).await;
        assert_eq!(r[1].message, "needs a, which was skipped");
        assert!(Selection::new(&decls, &["zz".into()], &[]).is_err());
    }

    #[tokio::test]
    async fn only_checks_that_will_run_are_warmed_once_even_if_a_need_then_fails() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let counters: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let decls = vec![
            decl("a.broken", Severity::Fail, &[], Behaviour::Problem),
            decl("b.needs_broken", Severity::Fail, &["a.broken"], Behaviour::Warms(counters[0].clone())),
            decl("c.skipped", Severity::Fail, &[], Behaviour::Warms(counters[1].clone())),
            decl("d.runs", Severity::Fail, &[], Behaviour::Warms(counters[2].clone())),
        ];
        let sel = Selection::new(&decls, &[], &["c.skipped".into()]).expect("valid");
        let ctx = Arc::new(Ctx::new(EnvView::new(Arc::new(EnvSet::default())), "test", Duration::from_secs(1)));
        let r = run(&decls, &sel, ctx, Arc::new(Quiet)).await;
        let warmed: Vec<usize> = counters.iter().map(|c| c.load(Ordering::SeqCst)).collect();
        // b is warmed (whether a passes is not known yet), then skipped.
        assert_eq!(warmed, [1, 0, 1]);
        assert_eq!(r[1].status, Status::Skip);
        assert_eq!(r[3].status, Status::Pass);
    }

    #[tokio::test]
    async fn a_check_that_only_reads_starts_beside_its_need_and_a_writer_waits_for_it() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (reader, writer) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let decls = vec![
            decl("a.slow_then_broken", Severity::Fail, &[], Behaviour::Sleep(Duration::from_secs(30))),
            decl("b.reads", Severity::Fail, &["a.slow_then_broken"], Behaviour::Runs(reader.clone(), true)),
            decl("c.writes", Severity::Fail, &["a.slow_then_broken"], Behaviour::Runs(writer.clone(), false)),
        ];
        let r = run_all(&decls, Duration::from_millis(300)).await;
        // The reader ran while its need was still running; the writer never ran.
        assert_eq!((reader.load(Ordering::SeqCst), writer.load(Ordering::SeqCst)), (1, 0));
        // The need timed out: the reader's early result does not count.
        assert_eq!(r[0].status, Status::Fail);
        assert_eq!((r[1].status, r[1].message.as_str()), (Status::Skip, "needs a.slow_then_broken, which failed"));
        assert_eq!((r[2].status, r[2].message.as_str()), (Status::Skip, "needs a.slow_then_broken, which failed"));

        // When the need passes, the early result is the check's, timed from then.
        let decls = vec![
            decl("a.slow", Severity::Fail, &[], Behaviour::Sleep(Duration::from_millis(200))),
            decl("b.reads", Severity::Fail, &["a.slow"], Behaviour::Runs(reader.clone(), true)),
            decl("c.writes", Severity::Fail, &["a.slow"], Behaviour::Runs(writer.clone(), false)),
        ];
        let r = run_all(&decls, Duration::from_secs(5)).await;
        assert_eq!((reader.load(Ordering::SeqCst), writer.load(Ordering::SeqCst)), (2, 1));
        assert_eq!((r[1].status, r[1].message.as_str()), (Status::Pass, "ran"));
        assert!(r[1].duration_ms < r[0].duration_ms, "charged for the wait: {r:?}");
        assert_eq!(r[2].status, Status::Pass);
    }

    #[tokio::test]
    async fn a_check_started_early_keeps_its_whole_timeout_after_a_slow_need_passes() {
        // The need takes most of the timeout and passes; the reader, started
        // beside it, waits for it and then needs most of its own timeout.
        let open = Arc::new(tokio::sync::Notify::new());
        let decls = vec![
            decl("a.connect", Severity::Fail, &[], Behaviour::Opens(open.clone(), Duration::from_millis(350))),
            decl("b.reads", Severity::Fail, &["a.connect"], Behaviour::Waits(open, Duration::from_millis(350))),
        ];
        let r = run_all(&decls, Duration::from_millis(500)).await;
        assert_eq!(r[0].status, Status::Pass, "{r:?}");
        assert_eq!((r[1].status, r[1].message.as_str()), (Status::Pass, "read"), "{r:?}");
    }

    /// Reads other checks' results (a check declared `after` them).
    struct Reads(&'static [&'static str]);

    impl Check for Reads {
        fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
            async move {
                let seen: Vec<String> = self
                    .0
                    .iter()
                    .map(|id| match ctx.finished(id) {
                        Some(r) => format!("{} {}: {}", r.id, r.status.past_tense(), r.message),
                        None => format!("{id} has not finished"),
                    })
                    .collect();
                Outcome::pass(seen.join("; "))
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn a_check_after_others_starts_once_they_have_finished_whatever_their_status_and_reads_their_results() {
        let mut decls = vec![
            decl("a.reader", Severity::Fail, &[], Behaviour::Pass),
            decl("b.slow", Severity::Fail, &[], Behaviour::Sleep(Duration::from_millis(200))),
            decl("c.broken", Severity::Fail, &[], Behaviour::Problem),
            decl("d.unrelated", Severity::Fail, &[], Behaviour::Pass),
        ];
        decls[0].check = Arc::new(Reads(&["b.slow", "c.broken"]));
        decls[0].after = vec!["b.slow".into(), "c.broken".into()];
        let r = run_all(&decls, Duration::from_secs(5)).await;
        // It waited for the slow one, and is not skipped although one failed: `after` orders, it does not gate.
        assert_eq!(
            (r[0].status, r[0].message.as_str()),
            (Status::Pass, "b.slow passed: slept; c.broken failed: broken")
        );

        // --only brings what it runs after; --skip leaves a skip to read.
        let sel = Selection::new(&decls, &["a.reader".into()], &[]).expect("valid");
        assert!(sel.runs("b.slow") && sel.runs("c.broken") && !sel.runs("d.unrelated"));
        let sel = Selection::new(&decls, &[], &["b.slow".into()]).expect("valid");
        let ctx = Arc::new(Ctx::new(EnvView::new(Arc::new(EnvSet::default())), "test", Duration::from_secs(5)));
        let r = run(&decls, &sel, ctx, Arc::new(Quiet)).await;
        assert_eq!(r[0].message, "b.slow was skipped: skipped by --skip; c.broken failed: broken");
    }

    #[tokio::test]
    async fn a_failure_whose_premise_another_check_reports_is_a_skip_that_names_the_root_cause() {
        use crate::check::{Premise, Service};
        let unset = || Premise::Set("DB_HOST".into());
        let reachable = || Premise::Reachable(Service::Postgres);
        let decls = vec![
            // The owner of the missing variable.
            decl(
                "env.required",
                Severity::Fail,
                &[],
                Behaviour::Answers(Outcome::problem("missing: DB_HOST").reports(unset())),
            ),
            // Rests on the variable: deferred to env.required. Reports the connection,
            // as the real connect check does.
            decl(
                "pg.connect",
                Severity::Fail,
                &[],
                Behaviour::Answers(
                    Outcome::problem("DB_HOST is not set")
                        .hint("set it")
                        .premise(unset())
                        .reports(reachable())
                        .detail("k", 1),
                ),
            ),
            // Rests on the connection, whose failure rests on the variable: the root is env.required.
            decl(
                "pg.custom",
                Severity::Warn,
                &[],
                Behaviour::Answers(Outcome::problem("no session").premise(reachable())),
            ),
            // Blocked by its need, which was deferred.
            decl("pg.schema", Severity::Fail, &["pg.connect"], Behaviour::Pass),
            // A premise nobody reports: its own failure stands.
            decl(
                "redis.x",
                Severity::Warn,
                &[],
                Behaviour::Answers(Outcome::problem("refused").premise(Premise::RedisAcl)),
            ),
            // A pass stays a pass whatever it rests on.
            decl("pg.fine", Severity::Fail, &[], Behaviour::Answers(Outcome::pass("ok").premise(unset()))),
        ];
        let r = run_all(&decls, Duration::from_secs(1)).await;
        let by = |id: &str| r.iter().find(|c| c.id == id).expect("present");
        assert_eq!(by("env.required").status, Status::Fail);
        let c = by("pg.connect");
        assert_eq!((c.status, c.message.as_str()), (Status::Skip, "see env.required: DB_HOST is not set"));
        assert_eq!((c.hint.as_deref(), c.ending.see(), c.details["k"].clone()), (None, Some("env.required"), 1.into()));
        assert_eq!(by("pg.custom").message, "see env.required: no session");
        let s = by("pg.schema");
        assert_eq!(
            (s.status, s.message.as_str()),
            (Status::Skip, "needs pg.connect, which was skipped (see env.required)")
        );
        assert_eq!((by("redis.x").status, by("redis.x").ending.see()), (Status::Warn, None));
        assert_eq!(by("pg.fine").status, Status::Pass);

        // Without the owner in the run, the dependent keeps its own failure.
        let sel = Selection::new(&decls, &[], &["env.required".into()]).expect("valid");
        let ctx = Arc::new(Ctx::new(EnvView::new(Arc::new(EnvSet::default())), "test", Duration::from_secs(1)));
        let r = run(&decls, &sel, ctx, Arc::new(Quiet)).await;
        assert_eq!((r[1].status, r[1].message.as_str()), (Status::Fail, "DB_HOST is not set"));
        assert_eq!(r[1].hint.as_deref(), Some("set it"));
        assert_eq!(r[2].message, "see pg.connect: no session");
    }

    #[tokio::test]
    async fn statements_one_lost_connection_cut_are_one_failure_owned_by_the_one_that_was_running() {
        use crate::check::{Premise, Service};
        let running = || Premise::Connection { service: Service::Postgres, running: true };
        let queued = || Premise::Connection { service: Service::Postgres, running: false };
        // As `query_failed` words them: the running statement owns the loss, the
        // queued ones rest on it (and, failing that, on the first of them).
        let ran = || Outcome::problem("cut while running").premise(running()).reports(running());
        let waited = || Outcome::problem("never ran").premise(running()).premise(queued()).reports(queued());
        let decls = vec![
            decl("pg.a", Severity::Fail, &[], Behaviour::Answers(waited())),
            decl("pg.b", Severity::Warn, &[], Behaviour::Answers(waited())),
            decl("pg.c", Severity::Fail, &[], Behaviour::Answers(ran())),
            decl("pg.d", Severity::Fail, &[], Behaviour::Answers(ran())),
        ];
        let r = run_all(&decls, Duration::from_secs(1)).await;
        let see = |i: usize| (r[i].status, r[i].ending.see());
        assert_eq!(see(2), (Status::Fail, None), "{r:?}");
        assert_eq!([see(0), see(1), see(3)], [(Status::Skip, Some("pg.c")); 3], "{r:?}");
        assert_eq!(r[0].message, "see pg.c: never ran");

        // Nobody was running (the server left between statements): the first queued one owns it.
        let decls = vec![
            decl("pg.a", Severity::Warn, &[], Behaviour::Answers(waited())),
            decl("pg.b", Severity::Fail, &[], Behaviour::Answers(waited())),
            decl("pg.c", Severity::Fail, &[], Behaviour::Answers(waited())),
        ];
        let r = run_all(&decls, Duration::from_secs(1)).await;
        assert_eq!((r[0].status, r[0].ending.see()), (Status::Warn, None), "{r:?}");
        assert_eq!([r[1].ending.see(), r[2].ending.see()], [Some("pg.a"); 2], "{r:?}");
    }
}
