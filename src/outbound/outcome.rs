//! What happened to one delivery attempt, and what follows from it: one type for both
//! backends. The embedded engine classifies each HTTP attempt here (`delivery::send`) and
//! acts on it everywhere else from the same value: the recorder schedules the retry and
//! counts the failure toward auto-pause, the lanes drop an unanswering endpoint to one
//! probing slot, the metrics label the attempt. A network failure is judged once more
//! against the camp's uplink (`delivery::uplink`) before anything acts on it. The Svix backend classifies the attempts
//! its operational webhooks report the same way. A new kind of failure is one more
//! variant here, and the compiler shows every place that must decide about it.

use crate::text_enum::text_enum;

/// Why an attempt got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No answer within the timeout, once connected.
    Timeout,
    /// The endpoint's host refused or reset the connection.
    Connect,
    /// The network did not reach the endpoint: its name did not resolve, the network or
    /// host was unreachable, or no connection was made within the connect timeout. When
    /// every endpoint fails this way at once, the camp's uplink is down, not the
    /// partners.
    Unreachable,
    /// Refused before or while sending (bad URL, SSRF guard, TLS, protocol error).
    Refused,
}

text_enum! {
    /// Whose failure an attempt was, stored with the attempt (`webhook_attempts.failure_class`).
    pub enum FailureClass {
        /// The network between us and the endpoint ([`FailureKind::Unreachable`]).
        Network => "network",
        /// The endpoint itself: it refused, failed TLS, answered an error status, or timed
        /// out after connecting.
        Endpoint => "endpoint",
    }
}

impl FailureKind {
    pub fn class(self) -> FailureClass {
        match self {
            FailureKind::Unreachable => FailureClass::Network,
            FailureKind::Timeout | FailureKind::Connect | FailureKind::Refused => {
                FailureClass::Endpoint
            }
        }
    }
}

/// What one attempt's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer: delivered. The failure streak ends.
    Delivered,
    /// 410 Gone: the receiver asks us to stop. Not retried; the subscription is paused
    /// at once.
    Gone,
    /// Any other HTTP status: retried on the schedule, and counted toward auto-pause.
    Rejected,
    /// No HTTP answer: retried and counted like a rejection; an endpoint that timed out
    /// or could not be reached is also probed with one slot until it answers again.
    NoAnswer(FailureKind),
    /// The network did not reach the endpoint while the camp's uplink was down (no
    /// endpoint reachable at all, `delivery::uplink`): not the endpoint's failure. It
    /// consumes no retry and does not count toward auto-pause; the delivery waits for the
    /// link to return.
    UplinkDown,
}

impl Outcome {
    /// Classifies an attempt by its HTTP status, or by why there was none.
    pub fn of_answer(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Delivered,
            410 => Outcome::Gone,
            _ => Outcome::Rejected,
        }
    }

    pub fn delivered(self) -> bool {
        self == Outcome::Delivered
    }

    /// Whose failure the attempt was; `None` when it was delivered.
    pub fn failure_class(self) -> Option<FailureClass> {
        match self {
            Outcome::Delivered => None,
            Outcome::Gone | Outcome::Rejected => Some(FailureClass::Endpoint),
            Outcome::NoAnswer(kind) => Some(kind.class()),
            Outcome::UplinkDown => Some(FailureClass::Network),
        }
    }

    /// Whether the attempt adds to the subscription's run of consecutive failures.
    pub fn is_failure(self) -> bool {
        !matches!(self, Outcome::Delivered | Outcome::UplinkDown)
    }

    /// Whether another attempt follows on the retry schedule (while it lasts).
    pub fn retries(self) -> bool {
        matches!(self, Outcome::Rejected | Outcome::NoAnswer(_))
    }

    /// Whether the delivery waits for the uplink, its retry schedule untouched.
    pub fn waits_for_uplink(self) -> bool {
        self == Outcome::UplinkDown
    }

    /// Whether the subscription is paused at once, whatever its failure streak.
    pub fn pauses_at_once(self) -> bool {
        self == Outcome::Gone
    }

    /// Whether the endpoint is not answering: it keeps one probing slot until it does.
    /// Any HTTP answer, even an error, ends probing.
    pub fn probes(self) -> bool {
        matches!(
            self,
            Outcome::NoAnswer(
                FailureKind::Timeout | FailureKind::Connect | FailureKind::Unreachable
            ) | Outcome::UplinkDown
        )
    }

    /// The `outcome` label of `ehrs_delivery_attempts_total`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Gone => "gone",
            Outcome::Rejected | Outcome::NoAnswer(_) => "failed",
            Outcome::UplinkDown => "uplink_down",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_says_what_follows() {
        let cases = [
            (Outcome::of_answer(204), (false, false, false, false)),
            (Outcome::of_answer(410), (true, false, true, false)),
            (Outcome::of_answer(500), (true, true, false, false)),
            (Outcome::of_answer(301), (true, true, false, false)),
            (
                Outcome::NoAnswer(FailureKind::Timeout),
                (true, true, false, true),
            ),
            (
                Outcome::NoAnswer(FailureKind::Connect),
                (true, true, false, true),
            ),
            (
                Outcome::NoAnswer(FailureKind::Unreachable),
                (true, true, false, true),
            ),
            (
                Outcome::NoAnswer(FailureKind::Refused),
                (true, true, false, false),
            ),
            (Outcome::UplinkDown, (false, false, false, true)),
        ];
        for (outcome, expected) in cases {
            let got = (
                outcome.is_failure(),
                outcome.retries(),
                outcome.pauses_at_once(),
                outcome.probes(),
            );
            assert_eq!(got, expected, "{outcome:?}");
        }
        assert_eq!(Outcome::of_answer(200).label(), "delivered");
        assert_eq!(Outcome::of_answer(410).label(), "gone");
        assert_eq!(Outcome::NoAnswer(FailureKind::Refused).label(), "failed");
    }

    #[test]
    fn only_an_unreachable_network_is_not_the_endpoint_s_failure() {
        let class = |outcome: Outcome| outcome.failure_class();
        assert_eq!(class(Outcome::of_answer(200)), None);
        for endpoint in [
            Outcome::of_answer(500),
            Outcome::of_answer(410),
            Outcome::NoAnswer(FailureKind::Timeout),
            Outcome::NoAnswer(FailureKind::Connect),
            Outcome::NoAnswer(FailureKind::Refused),
        ] {
            assert_eq!(
                class(endpoint),
                Some(FailureClass::Endpoint),
                "{endpoint:?}"
            );
        }
        assert_eq!(
            class(Outcome::NoAnswer(FailureKind::Unreachable)),
            Some(FailureClass::Network)
        );
        assert_eq!(class(Outcome::UplinkDown), Some(FailureClass::Network));
    }
}
