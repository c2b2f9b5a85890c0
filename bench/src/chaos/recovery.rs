//! Recovery figures: the faults a scenario script injected (its `--actions` file), the
//! connections clients lost and how long they took to resume, and the pauses in acks that
//! followed each fault. Pure functions over what the clients recorded; unit tested.

/// One lost connection and its resumption.
#[derive(Debug, Clone)]
pub struct Episode {
    pub user: usize,
    /// Index into the url list of the node the socket was on.
    pub from_url: usize,
    /// Where the client resumed, if it did.
    pub to_url: Option<usize>,
    pub disconnected_at_ms: u64,
    /// When every channel was subscribed again (replay included).
    pub resumed_at_ms: Option<u64>,
    pub reason: String,
    /// Connection attempts until one succeeded.
    pub attempts: u32,
}

impl Episode {
    pub fn resume_ms(&self) -> Option<u64> {
        Some(self.resumed_at_ms?.saturating_sub(self.disconnected_at_ms))
    }
}

/// A fault injected by the scenario script, read from the `--actions` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub at_ms: u64,
    pub label: String,
    /// A step of the recovery from the fault before it (a restart, SIGCONT, heal), not a new
    /// fault: written as `<unix_ms> + <label>`.
    pub follows: bool,
}

/// Parses `<unix_ms> <label>` and `<unix_ms> + <label>` lines; blank lines and `#` comments
/// are skipped.
pub fn parse_actions(text: &str) -> Vec<Action> {
    let mut actions: Vec<Action> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (at, label) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let label = label.trim();
            let (follows, label) = match label.strip_prefix("+ ") {
                Some(rest) => (true, rest.trim()),
                None => (false, label),
            };
            Some(Action { at_ms: at.parse().ok()?, label: label.to_owned(), follows })
        })
        .collect();
    actions.sort_by_key(|action| action.at_ms);
    actions
}

/// What followed one action, until the next one.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub action: Action,
    /// Connections lost in the window.
    pub disconnected: usize,
    /// Of those, how many never resumed.
    pub unresumed: usize,
    /// From the action to the last of those clients resumed.
    pub all_resumed_after_ms: Option<u64>,
    /// The longest resume (disconnect → resubscribed) in the window.
    pub max_resume_ms: Option<u64>,
    /// The longest pause between two consecutive acks of one channel that began in the window
    /// (from [`PAUSE_LEAD_MS`] before the action to as long before the next one).
    pub longest_ack_pause_ms: Option<u64>,
}

/// A pause in acks that begins this shortly before an action is the action's (the last ack
/// before the fault came a moment before it).
pub const PAUSE_LEAD_MS: u64 = 500;

/// Recovery per action; `ack_times` are the arrival times (unix ms) of acks, per channel.
pub fn recoveries(actions: &[Action], episodes: &[Episode], ack_times: &[Vec<u64>]) -> Vec<Recovery> {
    let mut sorted_acks: Vec<Vec<u64>> = ack_times.to_vec();
    for times in &mut sorted_acks {
        times.sort_unstable();
    }
    actions
        .iter()
        .enumerate()
        .map(|(index, action)| {
            let start = action.at_ms;
            let end = actions.get(index + 1).map_or(u64::MAX, |next| next.at_ms);
            let window: Vec<&Episode> =
                episodes.iter().filter(|e| e.disconnected_at_ms >= start && e.disconnected_at_ms < end).collect();
            let unresumed = window.iter().filter(|e| e.resumed_at_ms.is_none()).count();
            let all_resumed_after_ms = if window.is_empty() || unresumed > 0 {
                None
            } else {
                window.iter().filter_map(|e| e.resumed_at_ms).max().map(|at| at.saturating_sub(start))
            };
            let max_resume_ms = window.iter().filter_map(|e| e.resume_ms()).max();
            let (from, to) = (start.saturating_sub(PAUSE_LEAD_MS), end.saturating_sub(PAUSE_LEAD_MS));
            let longest_ack_pause_ms = sorted_acks
                .iter()
                .flat_map(|times| times.windows(2))
                .filter(|pair| pair[0] >= from && pair[0] < to)
                .map(|pair| pair[1] - pair[0])
                .max();
            Recovery {
                action: action.clone(),
                disconnected: window.len(),
                unresumed,
                all_resumed_after_ms,
                max_resume_ms,
                longest_ack_pause_ms,
            }
        })
        .collect()
}

/// A pause between two acks of one channel at least this long is a disruption (a channel
/// acks about every 50 ms under the checker's default load).
pub const DISRUPTION_PAUSE_MS: u64 = 1000;

/// How long the system took to recover from the scenario's faults: per fault (an action and
/// the actions that follow it, until the next fault), from the fault to the latest of (every
/// socket lost in that span resumed, every ack pause of at least [`DISRUPTION_PAUSE_MS`] that
/// began in it ended); the longest of those. `None` without actions, or when it never
/// recovered: a client never resumed, or a channel that had acks never acked again.
pub fn recovery_ms(actions: &[Action], episodes: &[Episode], ack_times: &[Vec<u64>]) -> Option<u64> {
    let first = actions.first()?.at_ms;
    let mut sorted_acks: Vec<Vec<u64>> = ack_times.to_vec();
    for times in &mut sorted_acks {
        times.sort_unstable();
        if times.last().is_some_and(|&last| last < first) {
            return None;
        }
    }
    let starts: Vec<u64> =
        actions.iter().enumerate().filter(|(i, a)| *i == 0 || !a.follows).map(|(_, a)| a.at_ms).collect();
    let mut longest = 0;
    for (index, &start) in starts.iter().enumerate() {
        let end = starts.get(index + 1).copied().unwrap_or(u64::MAX);
        let mut until = start;
        for episode in episodes.iter().filter(|e| e.disconnected_at_ms >= start && e.disconnected_at_ms < end) {
            until = until.max(episode.resumed_at_ms?);
        }
        let (from, to) = (start.saturating_sub(PAUSE_LEAD_MS), end.saturating_sub(PAUSE_LEAD_MS));
        for pair in sorted_acks.iter().flat_map(|times| times.windows(2)) {
            if pair[0] >= from && pair[0] < to && pair[1] - pair[0] >= DISRUPTION_PAUSE_MS {
                until = until.max(pair[1]);
            }
        }
        longest = longest.max(until - start);
    }
    Some(longest)
}

/// The median and maximum of some durations.
pub fn median_max(values: &[u64]) -> (Option<u64>, Option<u64>) {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let median = if sorted.is_empty() { None } else { Some(sorted[(sorted.len() - 1) / 2]) };
    (median, sorted.last().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_actions_and_times_recovery() {
        let actions = parse_actions("# comment\n2000 kill -9 n2\n\n1000 start\nbad line\n5000 pause n3\n");
        assert_eq!(actions.len(), 3);
        assert_eq!(actions[1], Action { at_ms: 2000, label: "kill -9 n2".to_owned(), follows: false });
        let episode = |user, at, resumed: Option<u64>| Episode {
            user,
            from_url: 1,
            to_url: resumed.map(|_| 0),
            disconnected_at_ms: at,
            resumed_at_ms: resumed,
            reason: "closed".to_owned(),
            attempts: 1,
        };
        let episodes = [episode(0, 2010, Some(2300)), episode(1, 2020, Some(2900)), episode(2, 5100, None)];
        let acks = vec![vec![1000, 1900, 1950, 2700, 2750, 4600, 6000], vec![2100, 2200]];
        let recoveries = recoveries(&actions, &episodes, &acks);
        assert_eq!(recoveries[0].disconnected, 0);
        assert_eq!(recoveries[0].all_resumed_after_ms, None);
        assert_eq!(recoveries[0].longest_ack_pause_ms, Some(900), "1000 → 1900; 1950 → 2700 is the next action's");
        assert_eq!(recoveries[1].disconnected, 2);
        assert_eq!(recoveries[1].all_resumed_after_ms, Some(900));
        assert_eq!(recoveries[1].max_resume_ms, Some(880));
        assert_eq!(recoveries[1].longest_ack_pause_ms, Some(1850), "2750 → 4600; 4600 → 6000 is the pause's");
        assert_eq!(recoveries[2].longest_ack_pause_ms, Some(1400));
        assert_eq!((recoveries[2].disconnected, recoveries[2].unresumed), (1, 1));
        assert_eq!(recoveries[2].all_resumed_after_ms, None);
    }

    #[test]
    fn recovery_is_the_latest_resume_or_end_of_a_long_ack_pause() {
        let actions = parse_actions("1000 kill -9 n1\n1500 + restart n1\n");
        let resumed = |at, back| Episode {
            user: 0,
            from_url: 0,
            to_url: Some(1),
            disconnected_at_ms: at,
            resumed_at_ms: back,
            reason: "closed".to_owned(),
            attempts: 1,
        };
        let acks = vec![vec![900, 950, 1100, 1150, 3400, 3450], vec![800, 1200, 1300]];
        assert_eq!(recovery_ms(&actions, &[resumed(1010, Some(2600))], &acks), Some(2400), "pause 1150 → 3400");
        assert_eq!(recovery_ms(&actions, &[resumed(1010, Some(4000))], &acks), Some(3000), "the resume is later");
        assert_eq!(recovery_ms(&actions, &[resumed(1010, None)], &acks), None, "never resumed");
        assert_eq!(recovery_ms(&actions, &[resumed(500, None)], &acks), Some(2400), "lost before the fault");
        let stopped = vec![vec![900, 950, 1100, 1150, 3400], vec![300, 400]];
        assert_eq!(recovery_ms(&actions, &[], &stopped), None, "channel 1 never acked again");
        assert_eq!(recovery_ms(&[], &[], &acks), None, "no fault, no recovery");
        let calm = vec![vec![900, 1300, 1700, 2100]];
        assert_eq!(recovery_ms(&actions, &[], &calm), Some(0));
    }

    #[test]
    fn recovery_is_the_longest_of_separate_faults() {
        let actions = parse_actions("1000 SIGSTOP n1\n5000 + SIGCONT n1\n20000 SIGSTOP n2\n24000 + SIGCONT n2\n");
        assert_eq!(actions[1], Action { at_ms: 5000, label: "SIGCONT n1".to_owned(), follows: true });
        // Pauses: 950 → 3500 (first fault), 20100 → 22000 (second); calm in between.
        let calm = (4000..20_000).step_by(500);
        let acks = vec![[950, 3500].into_iter().chain(calm).chain([20_100, 22_000, 22_100]).collect()];
        assert_eq!(recovery_ms(&actions, &[], &acks), Some(2500), "not 21 s from the first SIGSTOP");
        let late = vec![vec![900, 1100, 3400]];
        let marked = parse_actions("1000 kill -9 n1\n1500 + restart n1\n");
        assert_eq!(recovery_ms(&marked, &[], &late), Some(2400), "from the kill, through the restart");
        let unmarked = parse_actions("1000 kill -9 n1\n1500 restart n1\n");
        assert_eq!(recovery_ms(&unmarked, &[], &late), Some(1900), "two faults: the pause is the restart's");
    }

    #[test]
    fn median_and_max() {
        assert_eq!(median_max(&[]), (None, None));
        assert_eq!(median_max(&[5, 1, 3]), (Some(3), Some(5)));
        assert_eq!(median_max(&[4, 1]), (Some(1), Some(4)));
    }
}
