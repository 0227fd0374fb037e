//! A herd of agents discovering one API server, in virtual time, with kubejoin's real
//! retry policy (`kubejoin::discovery::retry`) beside kubeadm's and nodeadm's.
//!
//! ```text
//! cargo run --release --example herd            # the README's table
//! cargo run --release --example herd -- --seed 7
//! ```
//!
//! Each agent is one node booted by the same event, all at t = 0. A discovery is one
//! request (kubejoin) or two (kubeadm's flow: the untrusted fetch, then the pinned one);
//! an answered request takes 10 ms. The API servers:
//!
//! - **throttled**: a token bucket admitting R requests/s (bursts of R); the others get
//!   `429` with `Retry-After: 1`, as kube-apiserver's API Priority and Fairness answers;
//! - **down, then throttled**: connections refused for D seconds, then the same bucket.
//!
//! The policies, as each tool retries a failed discovery request:
//!
//! - **kubejoin**: [`Backoff::for_discovery`] with its `Retry-After` handling, its
//!   discovery timeout (5 min), then systemd's restart 10 s later (`RestartSec=10s`);
//! - **kubeadm** (v1.20+): polls every 5 s for 5 min (`wait.PollImmediate`); within one
//!   poll client-go waits out a 429's `Retry-After` and retries, up to 10 times;
//! - **nodeadm**: retries every 250 ms, whatever the answer, for 5 min.
//!
//! Reported: when the last agent joined, and how that compares with the ideal (the time
//! the API needs to admit the requests a join needs at its rate, counting its first
//! burst, after the outage); requests per agent; requests in the first second (every
//! agent's first try, the same for all policies, and its first retries) and in the
//! busiest second after it; agents that never joined.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use kubejoin::discovery::retry::Backoff;

const MS: u64 = 1_000;
const S: u64 = 1_000_000;
const RTT: u64 = 10 * MS;

/// splitmix64: a small deterministic generator, so that a run is reproducible.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy)]
struct Api {
    /// Admitted requests per second (and the bucket's burst).
    rate: f64,
    /// Connections refused until then (µs).
    down_until: u64,
}

enum Answer {
    Ok,
    Throttled { retry_after: Duration },
    Refused,
}

struct Bucket {
    api: Api,
    tokens: f64,
    at: u64,
}

impl Bucket {
    fn new(api: Api) -> Self {
        Bucket {
            api,
            tokens: api.rate,
            at: api.down_until,
        }
    }

    fn request(&mut self, now: u64) -> Answer {
        if now < self.api.down_until {
            return Answer::Refused;
        }
        let elapsed = now.saturating_sub(self.at) as f64 / S as f64;
        self.tokens = (self.tokens + elapsed * self.api.rate).min(self.api.rate);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Answer::Ok
        } else {
            Answer::Throttled {
                retry_after: Duration::from_secs(1),
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Kubejoin { fetches: u8 },
    Kubeadm,
    Nodeadm,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Kubejoin { fetches: 1 } => "kubejoin",
            Tool::Kubejoin { .. } => "kubejoin, pinned_refetch",
            Tool::Kubeadm => "kubeadm",
            Tool::Nodeadm => "nodeadm",
        }
    }

    fn fetches(self) -> u8 {
        match self {
            Tool::Kubejoin { fetches } => fetches,
            Tool::Kubeadm => 2,
            Tool::Nodeadm => 1,
        }
    }
}

/// One agent's state between its requests.
struct Agent {
    backoff: Backoff,
    /// When this process gives up (kubejoin and kubeadm: 5 min after it started).
    deadline: u64,
    /// Fetches still to do in this discovery.
    left: u8,
    /// kubeadm: 429 retries used in this poll (client-go allows 10).
    throttle_retries: u8,
    /// kubeadm: when its current poll started.
    poll_started: u64,
    requests: u32,
    joined: Option<u64>,
    failed: bool,
}

const TIMEOUT: u64 = 300 * S;

struct Outcome {
    last_joined: Option<u64>,
    requests: u64,
    /// Requests in the first second (every agent's first try is in it).
    first_second: u64,
    /// The busiest second after the first.
    peak: u64,
    never: usize,
    ideal: f64,
}

fn simulate(tool: Tool, agents: usize, api: Api, timeout: u64, seed: u64) -> Outcome {
    let mut rng = Rng(seed);
    let mut bucket = Bucket::new(api);
    let fresh = |start: u64| Agent {
        backoff: Backoff::for_discovery(),
        deadline: start + timeout,
        left: tool.fetches(),
        throttle_retries: 0,
        poll_started: start,
        requests: 0,
        joined: None,
        failed: false,
    };
    let mut state: Vec<Agent> = (0..agents).map(|_| fresh(0)).collect();
    let mut queue: BinaryHeap<Reverse<(u64, usize)>> =
        (0..agents).map(|i| Reverse((0, i))).collect();
    let mut per_second: Vec<u64> = Vec::new();
    while let Some(Reverse((now, i))) = queue.pop() {
        let second = (now / S) as usize;
        if per_second.len() <= second {
            per_second.resize(second + 1, 0);
        }
        per_second[second] += 1;
        let a = &mut state[i];
        a.requests += 1;
        let answer = bucket.request(now);
        let retry_after = match answer {
            Answer::Ok => {
                a.left -= 1;
                a.throttle_retries = 0;
                if a.left == 0 {
                    a.joined = Some(now + RTT);
                } else {
                    queue.push(Reverse((now + RTT, i)));
                }
                continue;
            }
            Answer::Throttled { retry_after } => Some(retry_after),
            Answer::Refused => None,
        };
        let next = match tool {
            Tool::Kubejoin { .. } => {
                let delay = a.backoff.next_delay(retry_after, rng.unit()).as_micros() as u64;
                if now + delay >= a.deadline {
                    // Discovery gives up; systemd starts kubejoin again 10 s later.
                    let restart = now + 10 * S;
                    *a = Agent {
                        requests: a.requests,
                        ..fresh(restart)
                    };
                    restart
                } else {
                    now + delay
                }
            }
            Tool::Kubeadm => match retry_after {
                Some(ra) if a.throttle_retries < 10 => {
                    a.throttle_retries += 1;
                    now + ra.as_micros() as u64
                }
                _ => {
                    // The next poll, 5 s after this one started.
                    a.throttle_retries = 0;
                    a.poll_started = (a.poll_started + 5 * S).max(now);
                    a.poll_started
                }
            },
            Tool::Nodeadm => now + 250 * MS,
        };
        if !matches!(tool, Tool::Kubejoin { .. }) && next >= a.deadline {
            a.failed = true;
            continue;
        }
        queue.push(Reverse((next, i)));
    }
    let requests: u64 = state.iter().map(|a| a.requests as u64).sum();
    let needed = agents as f64 * tool.fetches() as f64;
    Outcome {
        last_joined: if state.iter().all(|a| a.joined.is_some()) {
            state.iter().filter_map(|a| a.joined).max()
        } else {
            None
        },
        requests,
        first_second: per_second.first().copied().unwrap_or(0),
        peak: per_second.iter().skip(1).copied().max().unwrap_or(0),
        never: state
            .iter()
            .filter(|a| a.joined.is_none() || a.failed)
            .count(),
        ideal: api.down_until as f64 / S as f64 + (needed - api.rate).max(0.0) / api.rate,
    }
}

fn row(name: &str, agents: usize, o: &Outcome) {
    let all = match o.last_joined {
        Some(t) => {
            let t = t as f64 / S as f64;
            format!("{t:.1} s ({:.2}x)", t / o.ideal.max(0.001))
        }
        None => "never".into(),
    };
    println!(
        "| {name} | {all} | {:.2} | {} / {} | {} |",
        o.requests as f64 / agents as f64,
        o.first_second,
        o.peak,
        o.never
    );
}

fn main() {
    let mut seed = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => seed = args.next().and_then(|s| s.parse().ok()).expect("--seed N"),
            _ => {
                eprintln!("usage: herd [--seed N]");
                std::process::exit(2);
            }
        }
    }
    let tools = [
        Tool::Kubejoin { fetches: 1 },
        Tool::Kubejoin { fetches: 2 },
        Tool::Kubeadm,
        Tool::Nodeadm,
    ];
    let scenarios = [
        (
            "200 agents, 50 admitted requests/s",
            200,
            Api {
                rate: 50.0,
                down_until: 0,
            },
        ),
        (
            "10,000 agents, 500 admitted requests/s",
            10_000,
            Api {
                rate: 500.0,
                down_until: 0,
            },
        ),
        (
            "10,000 agents, API down 60 s, then 500 admitted requests/s",
            10_000,
            Api {
                rate: 500.0,
                down_until: 60 * S,
            },
        ),
    ];
    for (title, agents, api) in scenarios {
        println!("\n{title} (seed {seed})\n");
        println!(
            "| policy | all joined (vs ideal) | requests per agent | requests in the first second / peak after | never joined |"
        );
        println!("|---|---|---|---|---|");
        for tool in tools {
            row(
                tool.name(),
                agents,
                &simulate(tool, agents, api, TIMEOUT, seed),
            );
        }
    }
    // One agent, a server that refuses for longer than the agent waits: how often it asks.
    println!("\n1 agent, API down (refusing) longer than a 12 s discovery timeout (seed {seed})\n");
    println!("| policy | requests in 12 s |");
    println!("|---|---|");
    let down = Api {
        rate: 50.0,
        down_until: 3600 * S,
    };
    for tool in [Tool::Kubejoin { fetches: 1 }, Tool::Kubeadm, Tool::Nodeadm] {
        let timeout = 12 * S;
        let requests = match tool {
            // kubeadm's and nodeadm's polls end at the timeout; kubejoin's restarts are not
            // counted here: the first 12 s only.
            Tool::Kubejoin { .. } => {
                let mut rng = Rng(seed);
                let mut b = Backoff::for_discovery();
                let (mut t, mut n) = (0u64, 1);
                loop {
                    t += b.next_delay(None, rng.unit()).as_micros() as u64;
                    if t >= timeout {
                        break n;
                    }
                    n += 1;
                }
            }
            _ => simulate(tool, 1, down, timeout, seed).requests,
        };
        println!("| {} | {requests} |", tool.name());
    }
}
