//! `--format junit`: JUnit XML for GitLab/Jenkins test reports, via quick-junit.
//! One testsuite per category, one testcase per check.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report as Junit, TestCase, TestCaseStatus, TestSuite};

use crate::report::{Report, Status};

/// A check fails the JUnit report when it trips the run's `--fail-on`.
pub fn format(report: &Report) -> String {
    let fail_on = report.options.fail_on;
    let mut junit = Junit::new(report.tool);
    junit.set_time(Duration::from_millis(report.duration_ms));
    let mut suites: Vec<TestSuite> = Vec::new();
    for c in &report.checks {
        let text = match &c.hint {
            Some(hint) => format!("{}\nhint: {hint}", c.message),
            None => c.message.clone(),
        };
        let status = match c.status {
            Status::Pass => TestCaseStatus::success(),
            Status::Skip => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(c.message.as_str());
                s
            }
            Status::Warn | Status::Fail if fail_on.trips(c.status) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(c.message.as_str()).set_type(c.status.as_str()).set_description(text.as_str());
                s
            }
            // A warning below --fail-on passes the gate; keep the words visible.
            Status::Warn | Status::Fail => TestCaseStatus::success(),
        };
        let mut case = TestCase::new(c.id.as_str(), status);
        case.set_classname(format!("{}.{}", report.tool, c.category)).set_time(Duration::from_millis(c.duration_ms));
        if matches!(c.status, Status::Warn | Status::Fail) && !fail_on.trips(c.status) {
            case.set_system_out(format!("{}: {text}", c.status.as_str().to_uppercase()));
        }
        match suites.iter_mut().find(|s| s.name.as_str() == c.category) {
            Some(suite) => {
                suite.add_test_case(case);
            }
            None => {
                let mut suite = TestSuite::new(c.category.as_str());
                suite.add_test_case(case);
                suites.push(suite);
            }
        }
    }
    // JUnit has no report header: each suite carries the build and the environment.
    let properties = [
        ("mockmate-diag.version", report.version.to_string()),
        ("mockmate-diag.commit", report.commit.to_string()),
        ("mockmate-diag.build_date", report.build_date.to_string()),
        ("mockmate-diag.environment", report.environment.clone()),
        ("mockmate-diag.attempts", report.attempts.to_string()),
        ("mockmate-diag.interrupted", report.interrupted.to_string()),
    ];
    for suite in &mut suites {
        suite.add_properties(properties.iter().map(|(k, v)| Property::new(*k, v.as_str())));
        let total: u64 =
            report.checks.iter().filter(|c| c.category == suite.name.as_str()).map(|c| c.duration_ms).sum();
        suite.set_time(Duration::from_millis(total));
    }
    junit.add_test_suites(suites);
    match junit.to_string() {
        Ok(mut xml) => {
            if !xml.ends_with('\n') {
                xml.push('\n');
            }
            xml
        }
        // Only an I/O error of an in-memory buffer could get here.
        Err(e) => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- mockmate-diag: cannot write JUnit: {e} -->\n<testsuites/>\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::report::FailOn;

    #[test]
    fn snapshot_fail_on_fail() {
        insta::assert_snapshot!(super::format(&crate::format::fixture()));
    }

    #[test]
    fn warnings_fail_with_fail_on_warn() {
        let mut report = crate::format::fixture();
        report.options.fail_on = FailOn::Warn;
        let xml = super::format(&report);
        assert!(xml.contains("<testcase name=\"redis.connect\""), "{xml}");
        assert_eq!(xml.matches("<failure").count(), 3, "{xml}");
        assert_eq!(xml.matches("<skipped").count(), 2, "{xml}");
    }
}
