//! Exponential backoff with jitter, for transient source errors, and the
//! one restart loop of the hub's long-running tasks ([`supervise`]).

use serde::Deserialize;
use std::time::Duration;

/// How a pipeline retries a failing source (`[pipelines.X] retry`), and a
/// delivery a failing receiver (`[deliveries.X] retry`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First wait after a transient failure.
    #[serde(default = "default_initial", with = "humantime_serde")]
    pub initial: Duration,
    /// Longest wait between attempts.
    #[serde(default = "default_max", with = "humantime_serde")]
    pub max: Duration,
    /// Attempts per poll before the pipeline gives up until the next
    /// scheduled poll (0: keep trying).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_initial() -> Duration {
    Duration::from_millis(500)
}
fn default_max() -> Duration {
    Duration::from_secs(30)
}
fn default_attempts() -> u32 {
    8
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial: default_initial(),
            max: default_max(),
            max_attempts: default_attempts(),
        }
    }
}

/// The wait before retry number `attempt` (1-based): `initial · 2^(n-1)`,
/// capped at `max`, with "equal jitter" (half fixed, half random) so that
/// many pipelines failing together do not retry in lockstep. A server's
/// `Retry-After` wins when it asks for longer (it comes bounded, by
/// `duijie_connectors::http::RETRY_AFTER_CEILING`).
pub fn backoff(config: &RetryConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = config
        .initial
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)));
    let capped = exp.min(config.max);
    let half = capped / 2;
    let jitter = half.mul_f64(fastrand::f64());
    let wait = half + jitter;
    match retry_after {
        Some(after) if after > wait => after.min(duijie_connectors::http::RETRY_AFTER_CEILING),
        _ => wait,
    }
}

/// A failed attempt of a supervised task.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: crate::error::Error,
    /// Waiting will not help: the task stays stopped (the attempt said why).
    pub permanent: bool,
    /// It got work through before failing, so the backoff starts afresh (a
    /// source lost now and then is not one failing over and over).
    pub progressed: bool,
}

impl Failure {
    /// A failure as permanent as its error's class says.
    pub fn of(error: crate::error::Error, progressed: bool) -> Self {
        Self {
            permanent: error.is_permanent(),
            error,
            progressed,
        }
    }
}

/// Runs `attempt` again and again until it stops (`None`) or fails
/// permanently, waiting with backoff between failures, never past
/// `shutdown`. The one restart loop for ingest pipelines and push
/// pipelines; `resuming` says, in the log, what the next attempt does.
pub async fn supervise<F, Fut>(
    retry: &RetryConfig,
    shutdown: &tokio_util::sync::CancellationToken,
    resuming: &'static str,
    mut attempt: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Failure>>,
{
    let mut failures = 0u32;
    while let Some(failure) = attempt().await {
        if failure.permanent {
            return;
        }
        if failure.progressed {
            failures = 0;
        }
        failures += 1;
        let wait = backoff(retry, failures, None);
        tracing::error!(
            error = %failure.error,
            domain = %failure.error.domain(),
            wait_ms = wait.as_millis() as u64,
            "{resuming}"
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Domain, Error};

    /// A permanent failure stops the task at once; a transient one is tried
    /// again after the backoff, until the task stops by itself. Time is
    /// tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_stops_the_task_and_a_transient_one_is_tried_again() {
        let retry = RetryConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_attempts: 5,
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        let mut attempts = 0;
        supervise(&retry, &shutdown, "trying again", || {
            attempts += 1;
            async {
                Some(Failure::of(
                    Error::permanent(Domain::Config, "a bad file"),
                    false,
                ))
            }
        })
        .await;
        assert_eq!(attempts, 1, "a permanent failure was tried again");

        let mut attempts = 0;
        let started = tokio::time::Instant::now();
        supervise(&retry, &shutdown, "trying again", || {
            attempts += 1;
            let failed = attempts < 4;
            async move {
                failed.then(|| {
                    Failure::of(Error::transient(Domain::Bus, "the broker is away"), false)
                })
            }
        })
        .await;
        assert_eq!(attempts, 4);
        // Three waits, each at least half its backoff: 50 + 100 + 200 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(350),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn grows_and_is_capped_with_jitter() {
        let c = RetryConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            max_attempts: 5,
        };
        for _ in 0..100 {
            let first = backoff(&c, 1, None);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let fourth = backoff(&c, 4, None);
            assert!(fourth >= Duration::from_millis(400) && fourth <= Duration::from_millis(800));
            let late = backoff(&c, 20, None);
            assert!(late >= Duration::from_secs(1) && late <= Duration::from_secs(2));
        }
        assert_eq!(
            backoff(&c, 1, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
    }
}
