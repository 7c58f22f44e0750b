//! The comparison helpers must be able to fail: planted errors are caught.

use vpath_core::Path;
use vpath_sim::{check_lossy, diff_paths, generate, SimConfig};

fn scenario() -> vpath_sim::Scenario {
    generate(&SimConfig {
        seed: 3,
        services: 5,
        requests: 30,
        client_threads: 6,
        ..SimConfig::default()
    })
    .unwrap()
}

fn numbered(v: &[Path]) -> Vec<Path> {
    v.iter()
        .enumerate()
        .map(|(i, p)| Path {
            path: i as u64 + 1,
            ..p.clone()
        })
        .collect()
}

#[test]
fn exact_answers_pass_in_any_order() {
    let s = scenario();
    let mut got = numbered(&s.expected);
    got.reverse();
    assert!(diff_paths(&s.expected, &got).is_empty());
    let r = check_lossy(&s, &got);
    assert!(r.ok(), "{}", r.render(3));
    assert_eq!(r.recovered, s.expected.len());
    assert!(r.edges_checked > s.expected.len());
}

#[test]
fn any_changed_field_or_count_is_a_difference() {
    let s = scenario();
    type Change = Box<dyn Fn(&mut Vec<Path>)>;
    let changes: Vec<Change> = vec![
        Box::new(|g| g[0].root.end_ns += 1),
        Box::new(|g| g[1].root.children[0].bytes_out += 1),
        Box::new(|g| g[2].complete = false),
        Box::new(|g| g[3].root.comm = None),
        Box::new(|g| {
            g.pop();
        }),
        Box::new(|g| {
            let p = g[0].clone();
            g.push(p)
        }),
    ];
    for (i, ch) in changes.iter().enumerate() {
        let mut got = numbered(&s.expected);
        ch(&mut got);
        assert!(
            !diff_paths(&s.expected, &got).is_empty(),
            "change {i} not seen"
        );
    }
}

#[test]
fn wrong_stitches_duplicates_and_wrong_complete_paths_are_caught() {
    let s = scenario();
    // Swap the front servers of two paths: two wrong edges.
    let mut got = numbered(&s.expected);
    let (a, b) = (
        got[0].root.children[0].clone(),
        got[1].root.children[0].clone(),
    );
    got[0].root.children[0] = b;
    got[1].root.children[0] = a;
    got[0].complete = false;
    got[1].complete = false;
    let r = check_lossy(&s, &got);
    assert_eq!(r.bad_edges.len(), 2, "{}", r.render(5));
    assert!(r.wrong_complete.is_empty());
    // A complete path with a changed field; a complete path twice.
    let mut got = numbered(&s.expected);
    got[0].root.bytes_in += 1;
    got.push(got[1].clone());
    let r = check_lossy(&s, &got);
    assert_eq!(r.wrong_complete.len(), 1);
    assert_eq!(r.duplicate_complete.len(), 1);
    assert_eq!(r.recovered, s.expected.len() - 1);
}
