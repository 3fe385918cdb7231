use super::*;

#[test]
fn lines_round_trip_and_rotate() {
    let t = Timestamp(1234);
    let inputs = [
        Input::Sample {
            vm: Name::parse("alice:web").unwrap(),
            cpu_us: 5,
            vcpus: Some(1),
        },
        Input::Tick,
        Input::ActionResult {
            group: Name::parse("alice:web").unwrap(),
            id: 3,
            outcome: Err("boom".into()),
        },
        Input::Refusal {
            group: Name::parse("alice:web").unwrap(),
            why: Some("albatross policy: x".into()),
        },
        Input::ExternalCost { micros: 7 },
        Input::CpuRoom {
            group: Name::parse("alice:web").unwrap(),
            other_cpus: false,
        },
        Input::Lifecycle {
            group: Name::parse("alice:web").unwrap(),
            vm: Name::parse("alice:web-2").unwrap(),
            event: crate::core::lifecycle::Event::Ready,
            outcome: Err("tcp 10.0.0.2:8080: connection refused".into()),
        },
        Input::Approve {
            group: Name::parse("alice:web").unwrap(),
            id: 4,
            by: "ops".into(),
        },
        Input::Reject {
            group: Name::parse("alice:web").unwrap(),
            id: 5,
            by: "ops".into(),
        },
    ];
    for i in inputs {
        let line = Line::of(t, &i, None);
        let text = serde_json::to_string(&line).unwrap();
        let back: Line = serde_json::from_str(&text).unwrap();
        assert_eq!(back.input().unwrap(), (t, Some(i)));
    }
    let dir = std::env::temp_dir().join(format!("aa-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let p = dir.join("rec.jsonl");
    let mut r = Recorder::open(&p, 4096).unwrap();
    for _ in 0..200 {
        r.write(&Line::Tick { t_ms: 1 });
    }
    let cur = std::fs::metadata(&p).unwrap().len();
    let old = std::fs::metadata(dir.join("rec.jsonl.1")).unwrap().len();
    assert!(cur <= 4096 && old <= 4096 && cur + old > 0, "{cur} {old}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_policy_tables_are_all_that_is_kept() {
    let text = "[policy]\nmax_instances = 3\n[albatross]\nendpoint = \"h:1\"\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n[[group]]\nprimary = \"alice:web\"\nendpoint = \"default\"\n";
    let kept = policy_tables(text);
    assert!(
        !kept.contains("albatross") && !kept.contains("endpoint"),
        "{kept}"
    );
    let groups = groups_of(&kept).unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].1.max_instances, 3);
}
