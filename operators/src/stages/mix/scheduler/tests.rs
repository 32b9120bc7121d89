//! The mixing core on hand-made leaves: ratios on every prefix, shortfall policies, stages.

use super::*;

fn cfg(weights: &[(&str, f64)], shortfall: Shortfall, shard_tokens: u64) -> MixerConfig {
    let total: f64 = weights.iter().map(|w| w.1).sum();
    MixerConfig {
        leaves: weights
            .iter()
            .map(|(k, w)| Leaf { kind: k.to_string(), style: String::new(), source: String::new(), weight: w / total })
            .collect(),
        stages: 1,
        balance: Balance::Global,
        shortfall,
        max_epochs: 3,
        shuffle_window: 0,
        seed: 7,
        shard_tokens,
        max_buffer_tokens: u64::MAX,
    }
}

fn unit(leaf: usize, tokens: u64, id: u32) -> UnitRows<u32> {
    UnitRows { leaf, stage: 0, tokens, rows: vec![id] }
}

fn tokens_by_leaf(shards: &[ClosedShard<u32>], n: usize) -> Vec<u64> {
    let mut t = vec![0; n];
    for s in shards {
        for u in &s.units {
            t[u.unit.leaf] += u.unit.tokens;
        }
    }
    t
}

#[test]
fn every_prefix_follows_the_weights() {
    let mut m = Mixer::new(cfg(&[("real", 1.0), ("synthetic", 2.0)], Shortfall::Stop, 1000));
    for i in 0..300 {
        m.offer(unit(0, 10 + i % 7, i as u32));
        m.offer(unit(1, 10 + i % 5, 1000 + i as u32));
    }
    let mut shards = m.admit();
    shards.extend(m.finish());
    assert!(shards.len() >= 3);
    for s in &shards[..shards.len() - 1] {
        let t = tokens_by_leaf(std::slice::from_ref(s), 2);
        let share = t[1] as f64 / (t[0] + t[1]) as f64;
        // Off by at most about one unit (≤ 16 tokens) of a ~1,000-token shard.
        assert!((share - 2.0 / 3.0).abs() < 0.02, "shard share {share}");
    }
    let st = m.stats();
    // Stop: the synthetic side (~3,600 tokens) is short of twice the real side (~3,900).
    assert_eq!(st[1].left_out_tokens, 0);
    assert!(st[0].left_out_tokens > 0);
    let share = st[1].tokens as f64 / (st[0].tokens + st[1].tokens) as f64;
    assert!((share - 2.0 / 3.0).abs() < 0.005, "{share}");
    assert_eq!(st[0].offered_tokens, st[0].tokens + st[0].left_out_tokens);
}

#[test]
fn waits_for_the_leaf_that_is_behind() {
    let mut m = Mixer::new(cfg(&[("real", 1.0), ("synthetic", 1.0)], Shortfall::Stop, 20));
    for i in 0..10 {
        m.offer(unit(0, 10, i));
    }
    // Only one real unit can go before a synthetic one arrives.
    assert!(m.admit().is_empty());
    m.offer(unit(1, 10, 100));
    let s = m.admit();
    assert_eq!(s.len(), 1);
    assert_eq!(tokens_by_leaf(&s, 2), vec![10, 10]);
}

#[test]
fn repeat_replays_the_short_leaf_up_to_the_cap() {
    let mut m = Mixer::new(cfg(&[("real", 1.0), ("synthetic", 1.0)], Shortfall::Repeat, 1 << 30));
    for i in 0..100 {
        m.offer(unit(0, 10, i));
    }
    for i in 0..20 {
        m.offer(unit(1, 10, 1000 + i));
    }
    let shards = m.finish();
    let t = tokens_by_leaf(&shards, 2);
    // 3 passes over 200 synthetic tokens balance 600 real tokens (the real side may lead by
    // the one unit admitted before the last pass ran dry); the rest is left out.
    assert_eq!(t[1], 600);
    assert!((600..=610).contains(&t[0]), "{t:?}");
    let st = m.stats();
    assert_eq!((st[1].epochs, st[1].repeated_tokens), (3, 400));
    assert_eq!(st[0].left_out_tokens, 1000 - t[0]);
    let epochs: Vec<u32> = shards[0].units.iter().filter(|u| u.unit.leaf == 1).map(|u| u.epoch).collect();
    assert_eq!(epochs.iter().filter(|&&e| e == 2).count(), 20);
}

#[test]
fn a_full_buffer_leaves_out_its_oldest_units() {
    let mut c = cfg(&[("real", 1.0), ("synthetic", 1.0)], Shortfall::Stop, 1 << 30);
    c.max_buffer_tokens = 100;
    let mut m = Mixer::new(c);
    for i in 0..50 {
        m.offer(unit(1, 10, i));
    }
    assert!(m.held_rows() <= 10);
    assert_eq!((m.stats()[1].overflow_tokens, m.stats()[1].left_out_rows), (400, 40));
    m.offer(unit(0, 10, 100));
    let shards = m.finish();
    // The kept synthetic units are the newest ones.
    let ids: Vec<u32> = shards[0].units.iter().filter(|u| u.unit.leaf == 1).map(|u| u.unit.rows[0]).collect();
    assert_eq!(ids, vec![40]);
}

#[test]
fn report_goes_on_without_the_short_leaf() {
    let mut m = Mixer::new(cfg(&[("real", 1.0), ("synthetic", 1.0)], Shortfall::Report, 1 << 30));
    for i in 0..50 {
        m.offer(unit(0, 10, i));
    }
    for i in 0..10 {
        m.offer(unit(1, 10, 100 + i));
    }
    let shards = m.finish();
    assert_eq!(tokens_by_leaf(&shards, 2), vec![500, 100]);
    assert!(m.stats().iter().all(|s| s.left_out_tokens == 0));
}

#[test]
fn stages_fill_their_own_shards_and_shuffle_is_seeded() {
    let run = |seed| {
        let mut c = cfg(&[("real", 1.0), ("synthetic", 1.0)], Shortfall::Stop, 50);
        c.stages = 2;
        c.shuffle_window = 8;
        c.seed = seed;
        let mut m = Mixer::new(c);
        for i in 0..40 {
            m.offer(UnitRows { leaf: (i % 2) as usize, stage: (i / 20) as usize, tokens: 10, rows: vec![i] });
        }
        let mut s = m.admit();
        s.extend(m.finish());
        s.iter()
            .map(|s| (s.stage, s.seq, s.units.iter().map(|u| u.unit.rows[0]).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    };
    let a = run(1);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
    assert!(a.iter().all(|(stage, _, rows)| rows.iter().all(|&r| (r / 20) as usize == *stage)));
    let mut all: Vec<u32> = a.iter().flat_map(|s| s.2.clone()).collect();
    all.sort();
    assert_eq!(all, (0..40).collect::<Vec<_>>());
}

#[test]
fn weights_parse_with_errors() {
    let w = parse_weights("qa:1, medium : 2,easy").unwrap();
    assert_eq!(w.get("medium"), Some(&2.0));
    assert_eq!(w.get("easy"), Some(&1.0));
    assert!(parse_weights("a:x").unwrap_err().contains("not a number"));
    assert!(parse_weights("a:1,a:2").unwrap_err().contains("twice"));
    assert!(parse_weights("a:-1").is_err());
}
