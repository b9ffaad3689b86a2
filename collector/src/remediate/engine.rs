//! The remediation engine: one task that turns firing alerts into playbook runs, sends their
//! steps to agents one after the other, applies the guards, waits for approvals and results,
//! and undoes reversible actions after their time or when their alert resolves.
//!
//! Guards, in order, before a run starts and before each of its steps:
//! - the **kill switch** (`enabled = false`, or `POST /api/v1/remediation/kill`): no run starts,
//!   a running playbook stops before its next step; scheduled reverts still run (they give the
//!   administrator's configuration back);
//! - **max hosts per run**: an alert whose `host` matches more agents is refused;
//! - **cooldown** per (action, parameters, agent): the same action on the same target of the
//!   same host is not sent again within `cooldown_secs` (dry runs count apart);
//! - a **global rate limit** of `max_actions_per_minute` actions sent.
//!
//! Every decision is audited ([`super::audit`]). Runs waiting for an approval and scheduled
//! reverts are kept in the store (`remediation` table), so a restart keeps them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mailpulse_proto::actions::ActionKind;
use mailpulse_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::RemediationConfig;
use super::audit::{Audit, AuditEntry};
use super::bus::ActionBus;
use super::playbook::{Mode, Playbook, Resolved, resolve_step};
use crate::alerting::notify::Hook;
use crate::alerting::{AlertState, Transition};
use crate::store::{RecordTable, StoreHandle, unix_ms};

/// What the engine is told.
#[derive(Debug)]
pub enum Input {
    /// A round's alert transitions.
    Transitions(Vec<Transition>),
    /// A result an agent sent.
    Result(Arc<str>, pb::ActionResult),
    /// A person approves or rejects a waiting run.
    Decide {
        id: u64,
        approve: bool,
        actor: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The kill switch; `reply` is answered once it is set (and audited).
    Kill {
        killed: bool,
        actor: String,
        reply: oneshot::Sender<()>,
    },
}

/// The trigger alert of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRef {
    pub alertname: String,
    pub fingerprint: String,
    pub summary: String,
}

/// A run: one playbook's steps on one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub id: u64,
    pub playbook: String,
    pub alert: AlertRef,
    pub agent: String,
    pub host: String,
    pub mode: Mode,
    pub steps: Vec<Resolved>,
    pub next_step: usize,
    /// Approve mode: when the approval expires (Unix ms); None once approved.
    pub approval_expires_ms: Option<i64>,
    /// A revert run (of a reversible step of an earlier run).
    pub revert: bool,
    pub revert_after_secs: u64,
    pub revert_on_resolve: bool,
}

/// A reversible action that ran, and when it is undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revert {
    pub id: u64,
    pub playbook: String,
    pub alert: AlertRef,
    pub agent: String,
    pub host: String,
    pub kind: ActionKind,
    pub params: BTreeMap<String, String>,
    /// Unix ms; None: only when the alert resolves.
    pub due_ms: Option<i64>,
    pub on_resolve: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Kept {
    Approval(Run),
    Revert(Revert),
}

/// What `GET /api/v1/actions` lists.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pending {
    pub killed: bool,
    pub awaiting_approval: Vec<Run>,
    pub running: Vec<Run>,
    pub reverts: Vec<Revert>,
}

/// The engine's handle for the rest of the collector.
#[derive(Debug)]
pub struct Remediation {
    tx: mpsc::Sender<Input>,
    killed: Arc<AtomicBool>,
    view: Arc<RwLock<Pending>>,
    pub audit: Arc<Audit>,
}

impl Remediation {
    /// Sends `input` to the engine (false when it stopped).
    pub async fn send(&self, input: Input) -> bool {
        self.tx.send(input).await.is_ok()
    }

    /// Sets the kill switch and waits until the engine took it; false when it stopped.
    pub async fn set_killed(&self, killed: bool, actor: String) -> bool {
        let (reply, done) = oneshot::channel();
        self.send(Input::Kill {
            killed,
            actor,
            reply,
        })
        .await
            && done.await.is_ok()
    }

    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Approves or rejects run `id`.
    pub async fn decide(&self, id: u64, approve: bool, actor: String) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        if !self
            .send(Input::Decide {
                id,
                approve,
                actor,
                reply,
            })
            .await
        {
            return Err("remediation stopped".into());
        }
        answer.await.unwrap_or(Err("remediation stopped".into()))
    }

    /// The runs waiting, running and the scheduled reverts.
    pub fn pending(&self) -> Pending {
        let mut view = self.view.read().unwrap_or_else(|e| e.into_inner()).clone();
        view.killed = self.killed();
        view
    }
}

struct Engine {
    cfg: RemediationConfig,
    playbooks: Vec<Playbook>,
    store: StoreHandle,
    bus: Arc<ActionBus>,
    /// The webhook receivers `notify` steps post to.
    hooks: Vec<Hook>,
    audit: Arc<Audit>,
    killed: Arc<AtomicBool>,
    view: Arc<RwLock<Pending>>,
    next_id: u64,
    waiting: BTreeMap<u64, Run>,
    /// Runs with a step sent: action id → (run, deadline).
    running: HashMap<String, (Run, i64)>,
    reverts: BTreeMap<u64, Revert>,
    /// Cooldown: (kind, params, agent, dry) → last sent (Unix ms).
    last_sent: HashMap<String, i64>,
    /// Sends of the last minute (Unix ms).
    sent: VecDeque<i64>,
}

/// Starts the engine; `playbooks` were checked by the caller.
#[allow(clippy::too_many_arguments)]
pub fn start(
    cfg: RemediationConfig,
    playbooks: Vec<Playbook>,
    store: StoreHandle,
    bus: Arc<ActionBus>,
    hooks: Vec<Hook>,
    mut results: mpsc::Receiver<(Arc<str>, pb::ActionResult)>,
    mut shutdown: watch::Receiver<bool>,
) -> (Arc<Remediation>, tokio::task::JoinHandle<()>) {
    let audit = Arc::new(Audit::new(store.clone(), cfg.audit_file.clone()));
    let (tx, mut rx) = mpsc::channel(64);
    let killed = Arc::new(AtomicBool::new(!cfg.enabled));
    let view = Arc::new(RwLock::new(Pending::default()));
    let handle = Arc::new(Remediation {
        tx,
        killed: killed.clone(),
        view: view.clone(),
        audit: audit.clone(),
    });
    let mut engine = Engine {
        cfg,
        playbooks,
        store,
        bus,
        hooks,
        audit,
        killed,
        view,
        next_id: (unix_ms().max(0) as u64) * 1000,
        waiting: BTreeMap::new(),
        running: HashMap::new(),
        reverts: BTreeMap::new(),
        last_sent: HashMap::new(),
        sent: VecDeque::new(),
    };
    let task = tokio::spawn(async move {
        engine.restore();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(input) = rx.recv() => engine.input(input).await,
                Some((agent, result)) = results.recv() => {
                    engine.input(Input::Result(agent, result)).await;
                }
                _ = tick.tick() => engine.tick().await,
                _ = shutdown.changed() => return,
            }
            engine.publish();
        }
    });
    (handle, task)
}

fn key(kind: ActionKind, params: &BTreeMap<String, String>, agent: &str, dry: bool) -> String {
    let params: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}|{}|{agent}|{dry}", kind.as_str(), params.join(","))
}

impl Engine {
    fn restore(&mut self) {
        let Ok(kept) = self.store.records(RecordTable::Remediation) else {
            return;
        };
        for (id, bytes) in kept {
            match serde_json::from_slice::<Kept>(&bytes) {
                Ok(Kept::Approval(run)) => {
                    self.waiting.insert(id, run);
                }
                Ok(Kept::Revert(revert)) => {
                    self.reverts.insert(id, revert);
                }
                Err(_) => tracing::warn!(id, "a stored remediation entry does not decode; dropped"),
            }
            self.next_id = self.next_id.max(id + 1);
        }
        self.publish();
    }

    fn publish(&self) {
        let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
        view.awaiting_approval = self.waiting.values().cloned().collect();
        view.running = self.running.values().map(|(r, _)| r.clone()).collect();
        view.reverts = self.reverts.values().cloned().collect();
    }

    async fn keep(&self, id: u64, kept: Option<Kept>) {
        let (upserts, removals) = match kept {
            Some(k) => (
                vec![(id, serde_json::to_vec(&k).unwrap_or_default())],
                vec![],
            ),
            None => (vec![], vec![id]),
        };
        if let Err(e) = self
            .store
            .save_records(RecordTable::Remediation, upserts, removals)
            .await
        {
            tracing::warn!(error = %e, "storing remediation state failed");
        }
    }

    fn entry(&self, run: &Run, event: &str) -> AuditEntry {
        AuditEntry {
            event: event.into(),
            actor: if run.revert {
                "collector".into()
            } else {
                format!("playbook:{}", run.playbook)
            },
            playbook: run.playbook.clone(),
            alertname: run.alert.alertname.clone(),
            fingerprint: run.alert.fingerprint.clone(),
            agent: run.agent.clone(),
            host: run.host.clone(),
            mode: run.mode.as_str().into(),
            dry_run: run.mode == Mode::DryRun,
            ..AuditEntry::default()
        }
    }

    async fn input(&mut self, input: Input) {
        match input {
            Input::Transitions(transitions) => {
                for t in transitions {
                    match t {
                        Transition::Fired(state) => self.fired(&state).await,
                        Transition::Resolved(state) => self.resolved(&state).await,
                    }
                }
            }
            Input::Result(agent, result) => self.result(&agent, result).await,
            Input::Decide {
                id,
                approve,
                actor,
                reply,
            } => {
                let answer = self.decide(id, approve, actor).await;
                let _ = reply.send(answer);
            }
            Input::Kill {
                killed,
                actor,
                reply,
            } => {
                self.killed.store(killed, Ordering::SeqCst);
                self.audit
                    .record(AuditEntry {
                        event: "kill_switch".into(),
                        actor,
                        status: if killed { "on" } else { "off" }.into(),
                        ..AuditEntry::default()
                    })
                    .await;
                let _ = reply.send(());
            }
        }
    }

    /// A firing alert: every matching playbook runs on every agent of its host.
    async fn fired(&mut self, state: &AlertState) {
        let alertname = state.labels.get("alertname").cloned().unwrap_or_default();
        let alert = AlertRef {
            alertname: alertname.clone(),
            fingerprint: state.fingerprint.clone(),
            summary: state
                .annotations
                .get("summary")
                .cloned()
                .unwrap_or_default(),
        };
        let matching: Vec<Playbook> = self
            .playbooks
            .iter()
            .filter(|p| {
                *p.trigger.alert.get_ref() == alertname
                    && p.trigger
                        .matchers
                        .iter()
                        .all(|(k, v)| state.labels.get(k) == Some(v))
            })
            .cloned()
            .collect();
        for pb in matching {
            let mut base = AuditEntry {
                actor: format!("playbook:{}", pb.name),
                playbook: pb.name.clone(),
                alertname: alertname.clone(),
                fingerprint: state.fingerprint.clone(),
                mode: pb.mode.as_str().into(),
                dry_run: pb.mode == Mode::DryRun,
                ..AuditEntry::default()
            };
            let mut steps = Vec::new();
            for step in &pb.steps {
                match resolve_step(step, &state.labels) {
                    Ok(resolved) => steps.push(resolved),
                    Err(why) => {
                        base.event = "refused".into();
                        base.kind = step.action.get_ref().clone();
                        base.detail = format!("parameter check: {why}");
                        self.audit.record(base.clone()).await;
                        steps.clear();
                        break;
                    }
                }
            }
            if steps.is_empty() {
                continue;
            }
            if self.killed.load(Ordering::SeqCst) {
                base.event = "killed".into();
                base.detail = "the kill switch is on: the playbook did not start".into();
                self.audit.record(base).await;
                continue;
            }
            let Some(host) = state.labels.get("host") else {
                base.event = "refused".into();
                base.detail = "the alert names no host to act on".into();
                self.audit.record(base).await;
                continue;
            };
            let agents: Vec<String> = self
                .store
                .agents()
                .into_iter()
                .filter(|a| &a.host == host && a.capabilities.iter().any(|c| c == "actions"))
                .map(|a| a.agent_id)
                .collect();
            base.host = host.clone();
            if agents.is_empty() {
                base.event = "undeliverable".into();
                base.detail = format!("no agent that runs actions is on host {host}");
                self.audit.record(base).await;
                continue;
            }
            if agents.len() > self.cfg.max_hosts_per_run {
                base.event = "too_many_hosts".into();
                base.detail = format!(
                    "{} agents match, more than max_hosts_per_run = {}",
                    agents.len(),
                    self.cfg.max_hosts_per_run
                );
                self.audit.record(base).await;
                continue;
            }
            for agent in agents {
                self.next_id += 1;
                let mut run = Run {
                    id: self.next_id,
                    playbook: pb.name.clone(),
                    alert: alert.clone(),
                    agent,
                    host: host.clone(),
                    mode: pb.mode,
                    steps: steps.clone(),
                    next_step: 0,
                    approval_expires_ms: None,
                    revert: false,
                    revert_after_secs: pb.revert_after_secs,
                    revert_on_resolve: pb.revert_on_resolve,
                };
                if pb.mode == Mode::Approve {
                    let expiry = pb
                        .approval_expiry_secs
                        .unwrap_or(self.cfg.approval_expiry_secs);
                    run.approval_expires_ms = Some(unix_ms() + (expiry * 1000) as i64);
                    let mut e = self.entry(&run, "awaiting_approval");
                    e.action_id = run.id.to_string();
                    e.detail = format!(
                        "{} step(s): {}; expires in {expiry} s (mailpulse approve {})",
                        run.steps.len(),
                        describe(&run.steps),
                        run.id
                    );
                    self.audit.record(e).await;
                    self.keep(run.id, Some(Kept::Approval(run.clone()))).await;
                    self.waiting.insert(run.id, run);
                } else {
                    self.step(run).await;
                }
            }
        }
    }

    /// Reverts tied to a resolved alert are due now.
    async fn resolved(&mut self, state: &AlertState) {
        let due: Vec<u64> = self
            .reverts
            .iter()
            .filter(|(_, r)| r.on_resolve && r.alert.fingerprint == state.fingerprint)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(revert) = self.reverts.remove(&id) {
                self.keep(id, None).await;
                self.start_revert(revert, "the alert resolved").await;
            }
        }
        // Approvals of a resolved alert are moot.
        let moot: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, r)| r.alert.fingerprint == state.fingerprint)
            .map(|(id, _)| *id)
            .collect();
        for id in moot {
            if let Some(run) = self.waiting.remove(&id) {
                self.keep(id, None).await;
                let mut e = self.entry(&run, "expired");
                e.action_id = id.to_string();
                e.detail = "the alert resolved before anyone approved".into();
                self.audit.record(e).await;
            }
        }
    }

    async fn start_revert(&mut self, revert: Revert, why: &str) {
        let run = Run {
            id: revert.id,
            playbook: revert.playbook.clone(),
            alert: revert.alert.clone(),
            agent: revert.agent.clone(),
            host: revert.host.clone(),
            mode: Mode::Auto,
            steps: vec![Resolved::Action(revert.kind, revert.params.clone())],
            next_step: 0,
            approval_expires_ms: None,
            revert: true,
            revert_after_secs: 0,
            revert_on_resolve: false,
        };
        let mut e = self.entry(&run, "revert");
        e.kind = revert.kind.as_str().into();
        e.params = revert.params.clone();
        e.detail = why.into();
        self.audit.record(e).await;
        self.step(run).await;
    }

    /// Sends the run's next step (after the guards), or finishes it.
    async fn step(&mut self, run: Run) {
        // Past the last step the run is done (its results are audited).
        let (kind, params) = match run.steps.get(run.next_step).cloned() {
            None => return,
            Some(Resolved::Notify(message)) => {
                self.notify(&run, &message).await;
                let mut next = run;
                next.next_step += 1;
                return Box::pin(self.step(next)).await;
            }
            Some(Resolved::Action(kind, params)) => (kind, params),
        };
        let dry = run.mode == Mode::DryRun;
        let mut e = self.entry(&run, "");
        e.kind = kind.as_str().into();
        e.params = params.clone();
        let now = unix_ms();
        if !run.revert && self.killed.load(Ordering::SeqCst) {
            e.event = "killed".into();
            e.detail = format!(
                "the kill switch is on: stopped before step {}",
                run.next_step + 1
            );
            self.audit.record(e).await;
            return;
        }
        let cooldown_key = key(kind, &params, &run.agent, dry);
        if !run.revert
            && let Some(last) = self.last_sent.get(&cooldown_key)
            && now - last < (self.cfg.cooldown_secs * 1000) as i64
        {
            e.event = "cooldown".into();
            e.detail = format!(
                "sent {} s ago; cooldown {} s",
                (now - last) / 1000,
                self.cfg.cooldown_secs
            );
            self.audit.record(e).await;
            return;
        }
        while self.sent.front().is_some_and(|t| now - t >= 60_000) {
            self.sent.pop_front();
        }
        if !run.revert && self.sent.len() >= self.cfg.max_actions_per_minute as usize {
            e.event = "rate_limited".into();
            e.detail = format!(
                "{} actions sent in the last minute (max_actions_per_minute = {})",
                self.sent.len(),
                self.cfg.max_actions_per_minute
            );
            self.audit.record(e).await;
            return;
        }
        let action_id = format!("{}-{}", run.id, run.next_step + 1);
        e.action_id = action_id.clone();
        let action = pb::Action {
            id: action_id.clone(),
            kind: kind.as_str().into(),
            params: params.clone().into_iter().collect(),
            dry_run: dry,
        };
        if let Err(why) = self.bus.send(&run.agent, action) {
            e.event = "undeliverable".into();
            e.detail = why;
            self.audit.record(e).await;
            return;
        }
        self.sent.push_back(now);
        self.last_sent.insert(cooldown_key, now);
        // The cooldown table forgets what is past its cooldown.
        if self.last_sent.len() > 100_000 {
            let horizon = (self.cfg.cooldown_secs * 1000) as i64;
            self.last_sent.retain(|_, t| now - *t < horizon);
        }
        e.event = "sent".into();
        self.audit.record(e).await;
        let deadline = now + (self.cfg.result_timeout_secs * 1000) as i64;
        self.running.insert(action_id, (run, deadline));
    }

    /// Posts a `notify` step's message to every webhook receiver, signed; audited per receiver.
    async fn notify(&mut self, run: &Run, message: &str) {
        let mut e = self.entry(run, "notified");
        e.kind = super::playbook::NOTIFY.into();
        e.params = BTreeMap::from([("message".to_owned(), message.to_owned())]);
        if self.hooks.is_empty() {
            e.event = "undeliverable".into();
            e.detail = "no [[alerting.webhooks]] receiver is configured".into();
            self.audit.record(e).await;
            return;
        }
        let body = serde_json::json!({
            "kind": "mailpulse.playbook.notify",
            "version": "1",
            "playbook": run.playbook,
            "mode": run.mode.as_str(),
            "message": message,
            "alert": run.alert,
            "host": run.host,
            "agent": run.agent,
            "steps": describe(&run.steps),
            "at": crate::alerting::content::rfc3339(unix_ms()),
        });
        let body = bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        for hook in &self.hooks {
            let mut entry = e.clone();
            entry.detail = hook.url().to_owned();
            match hook.post_signed(body.clone()).await {
                Ok(status) => entry.status = status.to_string(),
                Err(why) => {
                    entry.event = "undeliverable".into();
                    entry.detail = format!("{}: {why}", hook.url());
                }
            }
            self.audit.record(entry).await;
        }
    }

    async fn result(&mut self, agent: &str, result: pb::ActionResult) {
        let Some((run, _)) = self
            .running
            .remove(&result.action_id)
            .filter(|(run, _)| run.agent == agent)
        else {
            self.audit
                .record(AuditEntry {
                    event: "result".into(),
                    actor: format!("agent:{agent}"),
                    agent: agent.into(),
                    action_id: mailpulse_proto::actions::params::shown(&result.action_id),
                    status: mailpulse_proto::actions::params::shown(&result.status),
                    detail: format!(
                        "unexpected result (no such action in flight): {}",
                        result.output
                    ),
                    ..AuditEntry::default()
                })
                .await;
            return;
        };
        let Some(Resolved::Action(kind, params)) = run.steps.get(run.next_step).cloned() else {
            return;
        };
        let mut e = self.entry(&run, "result");
        e.actor = format!("agent:{agent}");
        e.action_id = result.action_id.clone();
        e.kind = kind.as_str().into();
        e.params = params.clone();
        e.status = result.status.clone();
        e.detail = result.output.clone();
        self.audit.record(e).await;
        let ok = match run.mode {
            Mode::DryRun => result.status == "planned",
            _ => result.status == "ok",
        };
        if !ok {
            return;
        }
        if !run.revert
            && run.mode != Mode::DryRun
            && let Some(reverse) = kind.reverse()
            && (run.revert_after_secs > 0 || run.revert_on_resolve)
        {
            self.next_id += 1;
            let revert = Revert {
                id: self.next_id,
                playbook: run.playbook.clone(),
                alert: run.alert.clone(),
                agent: run.agent.clone(),
                host: run.host.clone(),
                kind: reverse,
                params: reverse_params(reverse, &params),
                due_ms: (run.revert_after_secs > 0)
                    .then(|| unix_ms() + (run.revert_after_secs * 1000) as i64),
                on_resolve: run.revert_on_resolve,
            };
            let mut e = self.entry(&run, "revert_scheduled");
            e.kind = reverse.as_str().into();
            e.params = revert.params.clone();
            e.detail = match (revert.due_ms, revert.on_resolve) {
                (Some(_), true) => {
                    format!("in {} s or when the alert resolves", run.revert_after_secs)
                }
                (Some(_), false) => format!("in {} s", run.revert_after_secs),
                _ => "when the alert resolves".into(),
            };
            self.audit.record(e).await;
            self.keep(revert.id, Some(Kept::Revert(revert.clone())))
                .await;
            self.reverts.insert(revert.id, revert);
        }
        let mut next = run;
        next.next_step += 1;
        Box::pin(self.step(next)).await;
    }

    async fn decide(&mut self, id: u64, approve: bool, actor: String) -> Result<(), String> {
        let Some(mut run) = self.waiting.remove(&id) else {
            return Err(format!("no action {id} waits for an approval"));
        };
        self.keep(id, None).await;
        let mut e = self.entry(&run, if approve { "approved" } else { "rejected" });
        e.actor = actor;
        e.action_id = id.to_string();
        e.detail = describe(&run.steps);
        self.audit.record(e).await;
        if approve {
            run.approval_expires_ms = None;
            self.step(run).await;
        }
        Ok(())
    }

    async fn tick(&mut self) {
        let now = unix_ms();
        let expired: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, r)| r.approval_expires_ms.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(run) = self.waiting.remove(&id) {
                self.keep(id, None).await;
                let mut e = self.entry(&run, "expired");
                e.action_id = id.to_string();
                e.detail = "nobody approved in time".into();
                self.audit.record(e).await;
            }
        }
        let late: Vec<String> = self
            .running
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in late {
            if let Some((run, _)) = self.running.remove(&id) {
                let mut e = self.entry(&run, "timeout");
                e.action_id = id;
                e.detail = format!(
                    "no result within {} s; the run stops",
                    self.cfg.result_timeout_secs
                );
                self.audit.record(e).await;
            }
        }
        let due: Vec<u64> = self
            .reverts
            .iter()
            .filter(|(_, r)| r.due_ms.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(revert) = self.reverts.remove(&id) {
                self.keep(id, None).await;
                self.start_revert(revert, "its time ran out").await;
            }
        }
    }
}

/// The parameters of the action that undoes one (a throttle's delay is not the undo's).
fn reverse_params(
    reverse: ActionKind,
    params: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let (required, optional) = reverse.params();
    params
        .iter()
        .filter(|(k, _)| {
            *k == "instance" || required.contains(&k.as_str()) || optional.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn describe(steps: &[Resolved]) -> String {
    steps
        .iter()
        .map(|step| match step {
            Resolved::Action(kind, params) => {
                let p: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{}({})", kind.as_str(), p.join(", "))
            }
            Resolved::Notify(message) => format!("notify({message:?})"),
        })
        .collect::<Vec<_>>()
        .join(", then ")
}
