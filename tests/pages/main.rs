//! The pages in a real browser: headless chromium over WebDriver (`tests/support/webdriver.rs`)
//! against the daemon on 127.0.0.1 loaded with the recorded scenario and the recorded
//! Prometheus answers. Screenshots are saved under `<target>/tmp/screenshots` and their paths
//! printed. Without chromium and chromedriver the browser tests skip, unless
//! `INCIDENTD_REQUIRE_E2E=1` (CI), where they fail.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "../support/recorded_prometheus.rs"]
mod recorded_prometheus;
#[path = "../support/webdriver.rs"]
mod webdriver;

mod browser;
mod forms;
