//! Every record of every fixture capture, exactly; and the same records
//! from rewrites of those captures (segments split to 1448 bytes,
//! reordered, retransmitted).

mod common;
use common::*;

fn check_case(case: &str) {
    let want = expected(case);
    let run = run_case_file(case, &fixture_dir(case).join("capture.pcap"));
    assert_same(case, &want, &group(run.records));
    let c = &run.counters;
    // A clean loopback capture gives nothing up.
    assert_eq!(c.tcp_gaps, 0, "{case}");
    assert_eq!(c.orphan_responses, 0, "{case}");
    assert_eq!(c.lost_requests as usize, lost_in(&want), "{case}");
    assert_eq!(c.decode_errors, 0, "{case}");
    assert_eq!(c.bad_responses, 0, "{case}");
}

fn lost_in(want: &ByConn) -> usize {
    want.values()
        .flatten()
        .filter(|r| r["result"] == "lost")
        .count()
}

#[test]
fn text_tcp_records() {
    check_case("text_tcp");
}

#[test]
fn meta_tcp_records() {
    check_case("meta_tcp");
}

#[test]
fn binary_tcp_records() {
    check_case("binary_tcp");
}

#[test]
fn udp_records() {
    check_case("udp");
}

#[test]
fn udp_big_records() {
    check_case("udp_big");
}

#[test]
fn mixed_noreply_records() {
    check_case("mixed_noreply");
}

#[test]
fn pipelined_tcp_records() {
    check_case("pipelined_tcp");
}

#[test]
fn rewritten_fixtures_give_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        let segs = read_segments(&fixture_dir(case).join("capture.pcap"));
        let rewritten = reorder_and_retransmit(&split(&segs, 1448));
        assert!(
            rewritten.len() > segs.len() || case == "udp",
            "{case}: rewrite changed nothing"
        );
        let path = dir.path().join(format!("{case}.pcap"));
        write_segments(&rewritten, &path);
        let run = run_case_file(case, &path);
        assert_same(
            &format!("{case} rewritten"),
            &expected(case),
            &group(run.records),
        );
        assert!(
            run.counters.tcp_retransmit_bytes > 0 || case == "udp",
            "{case}"
        );
        assert_eq!(run.counters.tcp_gaps, 0, "{case}");
    }
}

#[test]
fn split_only_gives_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        let segs = read_segments(&fixture_dir(case).join("capture.pcap"));
        let path = dir.path().join(format!("{case}.pcap"));
        write_segments(&split(&segs, 1448), &path);
        let run = run_case_file(case, &path);
        assert_same(
            &format!("{case} split"),
            &expected(case),
            &group(run.records),
        );
    }
}

#[test]
fn tiny_segments_reordered_give_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        let segs = read_segments(&fixture_dir(case).join("capture.pcap"));
        let mss = if case == "text_tcp" { 97 } else { 7 };
        let path = dir.path().join(format!("{case}.pcap"));
        write_segments(&reorder_and_retransmit(&split(&segs, mss)), &path);
        let run = run_case_file(case, &path);
        assert_same(
            &format!("{case} mss {mss}"),
            &expected(case),
            &group(run.records),
        );
        assert_eq!(run.counters.tcp_gaps, 0, "{case}");
    }
}
