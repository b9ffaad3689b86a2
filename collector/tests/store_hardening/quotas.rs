//! Series quotas per agent and expiry: one agent minting series fills its own quota (its new
//! label sets fold into `other`, sums stay exact), never the fleet's; series not written within
//! the retention are forgotten, in memory and on disk.

use mailpulse_collector::model::SeriesId;
use mailpulse_collector::store::Aggregate;
use mailpulse_proto::v1::Sample;

use crate::now_ms;
use crate::support::*;

/// Sum of every exposed line of `family` whose labels contain `label`.
fn family_sum(text: &str, family: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(name, _)| name.starts_with(&format!("{family}{{")) && name.contains(label))
        .map(|(_, v)| v.parse::<f64>().expect("numeric"))
        .sum()
}

#[tokio::test]
async fn one_agent_minting_series_cannot_stop_another_agents_new_series() {
    const MINTED: u64 = 100_000;
    const PER_BATCH: u64 = 20_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    // Far below what mx1 mints: without quotas mx1 alone fills it.
    config.limits.max_series = 20_000;
    config.limits.max_agent_samples_per_sec = 10_000_000;
    config.limits.agent_burst_samples = 10_000_000;
    config.store.max_series_per_agent = 1_000;
    config.store.max_other_series_per_agent = 10;
    let collector = start(config).await;

    let mut mx1 = AgentStream::mx1(collector.grpc_addr()).await;
    for seq in 1..=MINTED / PER_BATCH {
        let samples: Vec<Sample> = (0..PER_BATCH)
            .map(|i| {
                let domain = format!("d{}.test", (seq - 1) * PER_BATCH + i);
                counter("messages_sent", &[("domain", &domain)], 1.0)
            })
            .collect();
        assert_eq!(
            mx1.batch(seq, samples)
                .await
                .expect("mx1's batch is applied"),
            (seq, false)
        );
    }

    let mut client = client(collector.grpc_addr()).await;
    let mut mx2 = AgentStream::open(&mut client, Some(TOKEN_MX2))
        .await
        .expect("stream opens");
    mx2.send(hello("mx2", "mx2.example")).await;
    let ack = mx2
        .batch(
            1,
            vec![counter("messages_sent", &[("domain", "new.test")], 1.0)],
        )
        .await
        .expect("another agent's new series is applied");
    assert_eq!(ack, (1, false));

    let text = scrape(&collector).await;
    let mx1_sum = family_sum(
        &text,
        "mailpulse_messages_sent_total",
        "host=\"mx1.example\"",
    );
    assert_eq!(
        mx1_sum, MINTED as f64,
        "every folded sample still counts once"
    );
    let other = value(
        &text,
        "mailpulse_messages_sent_total{domain=\"other\",host=\"mx1.example\"}",
    );
    assert_eq!(
        other,
        Some((MINTED - 1_000) as f64),
        "past the quota: other"
    );
    assert_eq!(
        value(
            &text,
            "mailpulse_messages_sent_total{domain=\"new.test\",host=\"mx2.example\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "mailpulse_collector_agent_series{host=\"mx1.example\",kind=\"own\"}"
        ),
        Some(1_000.0)
    );
    assert_eq!(
        value(
            &text,
            "mailpulse_collector_agent_series_folded_total{host=\"mx1.example\"}"
        ),
        Some((MINTED - 1_000) as f64)
    );
    collector.shutdown().await.expect("clean shutdown");
}

const DAY_MS: i64 = 86_400_000;

/// One message sent to `domain`, in the last whole 5-minute window (inside even a one-day
/// retention, which refuses older windows).
fn sent(domain: &str) -> Sample {
    let mut sample = counter("messages_sent", &[("domain", domain)], 1.0);
    sample.window_start_unix_ms = (now_ms() / 300_000 - 1) * 300_000;
    sample
}

fn line(domain: &str) -> String {
    format!("mailpulse_messages_sent_total{{domain=\"{domain}\",host=\"mx1.example\"}}")
}

fn series_id(collector: &mailpulse_collector::RunningCollector, domain: &str) -> Option<SeriesId> {
    let mut key = Vec::new();
    mailpulse_collector::store::series_key(
        "messages_sent",
        [("domain", domain), ("host", "mx1.example")],
        &mut key,
    );
    collector.store().registry().read().get(&key)
}

#[tokio::test]
async fn series_not_written_within_the_retention_are_forgotten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.store.retention_days = 1;
    config.store.fold_interval_secs = 0;
    config.store.prune_interval_secs = 1;
    let collector = start(config.clone()).await;
    let mut agent = AgentStream::mx1(collector.grpc_addr()).await;

    let idle_since = now_ms();
    assert_eq!(
        agent
            .batch(1, vec![sent("idle.test"), sent("busy.test")])
            .await
            .expect("ack"),
        (1, false)
    );
    let idle = series_id(&collector, "idle.test").expect("idle series");
    let busy = series_id(&collector, "busy.test").expect("busy series");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        agent.batch(2, vec![sent("busy.test")]).await.expect("ack"),
        (2, false)
    );

    // A day and a second later, idle.test was not written within the retention; busy.test was.
    collector
        .store()
        .prune_as_of(idle_since + DAY_MS + 1_000)
        .await
        .expect("prune");
    let text = scrape(&collector).await;
    assert_eq!(value(&text, &line("idle.test")), None, "expired:\n{text}");
    assert_eq!(value(&text, &line("busy.test")), Some(2.0));
    assert_eq!(
        series_id(&collector, "idle.test"),
        None,
        "the registry forgot it"
    );
    assert_eq!(
        value(&text, "mailpulse_collector_series_expired_total"),
        Some(1.0)
    );

    // The same label set written again (same stream: its cached id must not be used) is a
    // new series that starts from zero.
    assert_eq!(
        agent.batch(3, vec![sent("idle.test")]).await.expect("ack"),
        (3, false)
    );
    assert_eq!(
        value(&scrape(&collector).await, &line("idle.test")),
        Some(1.0)
    );
    let idle_again = series_id(&collector, "idle.test").expect("idle series again");

    // Expired again, then its id freed (a round later, at least 10 s after the expiry) and
    // taken by the next new series: only that series' data is under the id.
    let later = now_ms() + DAY_MS + 1_000;
    collector.store().prune_as_of(later).await.expect("prune");
    assert_eq!(value(&scrape(&collector).await, &line("idle.test")), None);
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    collector.store().prune_as_of(later).await.expect("prune");
    let mut fresh = sent("fresh.test");
    fresh.window_start_unix_ms = (now_ms() / 300_000 - 1) * 300_000;
    assert_eq!(agent.batch(4, vec![fresh]).await.expect("ack"), (4, false));
    let reused = series_id(&collector, "fresh.test").expect("fresh series");
    assert!(
        [idle, busy, idle_again].contains(&reused),
        "an expired id is reused: {reused:?} not in {:?}",
        [idle, busy, idle_again]
    );
    let snapshot = collector.store().snapshot();
    assert_eq!(snapshot.totals[reused.index()], Aggregate::Counter(1.0));
    let mut points = Vec::new();
    for _ in 0..100 {
        points = collector
            .store()
            .series_points(reused, 0, i64::MAX)
            .expect("points");
        if !points.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(points.len(), 1, "only the new series' point: {points:?}");
    assert_eq!(points[0].1, Aggregate::Counter(1.0));
    drop(agent);

    // The on-disk series table forgot the expired series too.
    collector.shutdown().await.expect("clean shutdown");
    let collector = start(config).await;
    let text = scrape(&collector).await;
    assert_eq!(series_id(&collector, "idle.test"), None);
    assert_eq!(value(&text, &line("idle.test")), None);
    assert_eq!(value(&text, &line("fresh.test")), Some(1.0));
    assert_eq!(
        value(&text, &line("busy.test")),
        None,
        "expired in the later round"
    );
    collector.shutdown().await.expect("clean shutdown");
}
