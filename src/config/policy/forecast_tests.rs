use std::path::Path;
use std::time::Duration;

use crate::config::{Config, problems};

#[test]
fn predictive_takes_true_false_or_shadow_and_the_forecast_keys_are_checked() {
    let c = Config::parse(
        "[policy]\npredictive = \"shadow\"\nforecast_margin = \"2m\"\nforecast_refit = \"30m\"\n\
         [[group]]\nprimary = \"a:web\"\npredictive = true\n\
         [[group]]\nprimary = \"a:db\"\n",
        Path::new("t.toml"),
    )
    .unwrap();
    let p = |i: usize| &c.groups[i].policy;
    assert!(p(0).predictive && !p(0).predictive_shadow);
    assert!(!p(1).predictive && p(1).predictive_shadow);
    assert_eq!(p(1).forecast_margin, Duration::from_secs(120));
    assert_eq!(p(1).forecast_refit, Duration::from_secs(1800));
    let d = Config::parse("", Path::new("t.toml")).unwrap().policy;
    assert!(!d.predictive && !d.predictive_shadow);
    for (text, want) in [
        (
            "[policy]\npredictive = \"yes\"\n",
            "policy.predictive: \"yes\" is not true, false or \"shadow\"",
        ),
        (
            "[[group]]\nprimary = \"a:b\"\npredictive = 1\n",
            "group[0] (a:b).predictive: expected true, false or \"shadow\", got an integer",
        ),
        (
            "[policy]\nforecast_max_error = 101\n",
            "policy.forecast_max_error: 101 is out of range 0..=100",
        ),
        (
            "[policy]\nforecast_refit = \"1m\"\n",
            "policy.forecast_refit: 1m is out of range 5m..=7days",
        ),
        (
            "[policy]\nforecast_margin = \"2days\"\n",
            "policy.forecast_margin: 2days is above 1day",
        ),
    ] {
        let got = problems(text);
        assert!(
            got.iter().any(|p| p.contains(want)),
            "{text:?}: {got:?} lacks {want:?}"
        );
    }
}
