//! `paycode demo` (the real binary) drives a mix of test codes and refunds
//! through the real service and sandbox until everything settles, and its
//! summary adds up.

use std::process::Command;

#[test]
fn the_demo_settles_every_order_and_its_summary_adds_up() {
    // 40 payments of the demo mix: the summary counts 40 settled orders and real channel calls.
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_paycode"))
        .args(["demo", "--orders", "40", "--seed", "7"])
        .current_dir(dir.path())
        .output()
        .expect("paycode demo runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = String::from_utf8(output.stdout).expect("UTF-8");
    // The demo works in a directory of its own and leaves nothing behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(summary.contains("40 payments"), "{summary}");
    assert!(summary.contains("all settled"), "{summary}");
    let table: Vec<(&str, usize)> = summary
        .lines()
        .skip_while(|line| !line.starts_with("final status"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .map(|line| {
            let mut parts = line.split_whitespace();
            (
                parts.next().unwrap(),
                parts.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(table.iter().map(|(_, n)| n).sum::<usize>(), 40, "{summary}");
    let settled = [
        "paid",
        "closed",
        "reversed",
        "partially_refunded",
        "refunded",
        "manual_review",
    ];
    assert!(
        table.iter().all(|(status, _)| settled.contains(status)),
        "{summary}"
    );
    assert!(
        summary.contains("wechat pay") && summary.contains("alipay pay"),
        "{summary}"
    );
    // Then each channel's statement was reconciled: every line is accounted
    // for, and the only findings are WeChat's code 06 (paid at the instant of
    // the revoke: the ledger closed it, the channel shows paid and reversed).
    let reconciled: Vec<Vec<&str>> = summary
        .lines()
        .skip_while(|line| !line.starts_with("reconciliation"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert!(reconciled.len() >= 2, "{summary}");
    let mut matched_total = 0;
    for row in &reconciled {
        let (lines, matched, findings): (usize, usize, usize) = (
            row[2].parse().unwrap(),
            row[3].parse().unwrap(),
            row[4].parse().unwrap(),
        );
        assert!(matched <= lines, "{summary}");
        assert!(findings > 0 || matched == lines, "{summary}");
        matched_total += matched;
        let kinds = row[5..].join(" ");
        assert!(
            findings == 0 || (row[0] == "wechat" && kinds.starts_with("status_mismatch")),
            "{summary}"
        );
    }
    assert!(matched_total > 20, "{summary}");
}
