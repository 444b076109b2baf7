//! Validation of decoded input: every rule rejects with an error that names
//! the field, and valid events pass.

use earlykill_core::event::validate::{self, Limits, ValidationError, MAX_EVENT_TIME};
use earlykill_core::event::InteractionKind;

use earlykill_core::fixtures::*;

const NOW: i64 = T0;

fn limits() -> Limits {
    Limits::default()
}

fn field(err: ValidationError) -> (&'static str, &'static str) {
    let field = match &err {
        ValidationError::Empty { field }
        | ValidationError::TooLong { field, .. }
        | ValidationError::OutOfRange { field, .. }
        | ValidationError::InFuture { field, .. }
        | ValidationError::ControlCharacter { field, .. } => *field,
    };
    assert!(
        err.to_string().contains(field),
        "the message names the field: {err}"
    );
    (field, err.kind())
}

#[test]
fn valid_events_pass() {
    let mut p = posted("v", T0, 0.06);
    p.kill_threshold = Some(1.0);
    p.min_interactions = Some(1);
    p.timeout_minutes = Some(10_080);
    assert_eq!(validate::posted(&p, &limits(), NOW), Ok(()));
    let i = interaction("e", "v", InteractionKind::View, 0, T0);
    assert_eq!(validate::interaction(&i, &limits(), NOW), Ok(()));
    assert_eq!(validate::stop(&stop("v", T0), &limits(), NOW), Ok(()));
}

#[test]
fn missing_and_oversized_ids_are_rejected() {
    let mut p = posted("v", T0, 0.06);
    p.persona_id = "".into();
    assert_eq!(
        field(validate::posted(&p, &limits(), NOW).unwrap_err()),
        ("persona_id", "empty_field")
    );
    let long = "x".repeat(257);
    let i = interaction(&long, "v", InteractionKind::Like, 1, T0);
    assert_eq!(
        field(validate::interaction(&i, &limits(), NOW).unwrap_err()),
        ("event_id", "oversized_field")
    );
    let mut s = stop("v", T0);
    s.requested_by = "".into();
    assert_eq!(
        field(validate::stop(&s, &limits(), NOW).unwrap_err()),
        ("requested_by", "empty_field")
    );
}

#[test]
fn rates_and_thresholds_must_be_in_zero_to_one() {
    for bad in [0.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
        let p = posted("v", T0, bad);
        assert_eq!(
            field(validate::posted(&p, &limits(), NOW).unwrap_err()).0,
            "expected_engagement_rate",
            "{bad}"
        );
        let mut p = posted("v", T0, 0.1);
        p.kill_threshold = Some(bad);
        assert_eq!(
            field(validate::posted(&p, &limits(), NOW).unwrap_err()).0,
            "kill_threshold",
            "{bad}"
        );
    }
}

#[test]
fn overrides_out_of_range_are_rejected() {
    let mut p = posted("v", T0, 0.1);
    p.min_interactions = Some(0);
    assert_eq!(
        field(validate::posted(&p, &limits(), NOW).unwrap_err()).0,
        "min_interactions"
    );
    let mut p = posted("v", T0, 0.1);
    p.timeout_minutes = Some(10_081);
    assert_eq!(
        field(validate::posted(&p, &limits(), NOW).unwrap_err()).0,
        "timeout_minutes"
    );
}

#[test]
fn negative_counts_are_rejected() {
    let i = interaction("e", "v", InteractionKind::View, -1, T0);
    assert_eq!(
        field(validate::interaction(&i, &limits(), NOW).unwrap_err()),
        ("count", "out_of_range")
    );
}

#[test]
fn timestamps_more_than_seconds_ahead_or_before_1970_are_rejected() {
    // One event moves its partition's clock: the default allows a few
    // seconds of clock disagreement, not more.
    let skew = validate::DEFAULT_MAX_FUTURE_SKEW_MS;
    assert_eq!(skew, 5 * SECOND);
    let i = interaction("e", "v", InteractionKind::View, 1, NOW + skew + 1);
    assert_eq!(
        field(validate::interaction(&i, &limits(), NOW).unwrap_err()),
        ("occurred_at", "future_timestamp")
    );
    let i = interaction("e", "v", InteractionKind::View, 1, NOW + skew);
    assert_eq!(
        validate::interaction(&i, &limits(), NOW),
        Ok(()),
        "the limit itself is allowed"
    );
    let p = posted("v", -1, 0.1);
    assert_eq!(
        field(validate::posted(&p, &limits(), NOW).unwrap_err()),
        ("posted_at", "out_of_range")
    );
}

#[test]
fn the_future_limit_can_be_lifted_for_simulations_but_not_past_year_9999() {
    let lifted = Limits {
        max_future_skew_ms: None,
    };
    let s = stop("v", NOW + 365 * 24 * 60 * MINUTE);
    assert_eq!(validate::stop(&s, &lifted, NOW), Ok(()));
    let s = stop("v", MAX_EVENT_TIME + 1);
    assert_eq!(
        field(validate::stop(&s, &lifted, NOW).unwrap_err()).0,
        "requested_at"
    );
}

#[test]
fn metadata_is_bounded() {
    let mut p = posted("v", T0, 0.1);
    p.metadata = (0..65).map(|n| (format!("k{n}"), "v".to_owned())).collect();
    assert_eq!(
        field(validate::posted(&p, &limits(), NOW).unwrap_err()),
        ("metadata", "oversized_field")
    );
    let mut p = posted("v", T0, 0.1);
    p.metadata.insert("k".into(), "x".repeat(1025));
    assert_eq!(
        field(validate::posted(&p, &limits(), NOW).unwrap_err()).0,
        "metadata value"
    );
}

#[test]
fn control_characters_are_rejected_in_ids_and_text_but_tabs_and_newlines_in_text_pass() {
    let mut s = stop("v", T0);
    s.reason = "spam\u{0}".into();
    assert_eq!(
        field(validate::stop(&s, &limits(), NOW).unwrap_err()),
        ("reason", "control_character")
    );
    s.reason = "line one\nline two\tend\r".into();
    assert_eq!(validate::stop(&s, &limits(), NOW), Ok(()));
    let i = interaction("e\u{7f}", "v", InteractionKind::View, 1, T0);
    assert_eq!(
        field(validate::interaction(&i, &limits(), NOW).unwrap_err()),
        ("event_id", "control_character")
    );
    let p = posted("v\u{85}", T0, 0.06);
    assert_eq!(
        field(validate::posted(&p, &limits(), NOW).unwrap_err()),
        ("variant_id", "control_character")
    );
    let mut p = posted("v", T0, 0.06);
    p.metadata.insert("arm".into(), "B\u{1b}[31m".into());
    assert_eq!(
        field(validate::posted(&p, &limits(), NOW).unwrap_err()),
        ("metadata value", "control_character")
    );
    let error = validate::stop(&stop("v\u{0}x", T0), &limits(), NOW).unwrap_err();
    assert!(error.to_string().contains("U+0000"), "{error}");
}

#[test]
fn count_is_bounded_so_sums_never_saturate() {
    let ok = interaction("e", "v", InteractionKind::View, validate::MAX_COUNT, T0);
    assert_eq!(validate::interaction(&ok, &limits(), NOW), Ok(()));
    let huge = interaction("e", "v", InteractionKind::View, i64::MAX, T0);
    assert_eq!(
        field(validate::interaction(&huge, &limits(), NOW).unwrap_err()),
        ("count", "out_of_range")
    );
}
