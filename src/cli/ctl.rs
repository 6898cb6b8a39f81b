//! `backupd-sim ctl`: locks and faults of a running `serve --control`,
//! changed at run time over the control endpoint.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct CtlArgs {
    /// The control endpoint (`control on ADDR` from `serve --control`).
    #[arg(long, env = "BACKUPD_SIM_CONTROL")]
    addr: SocketAddr,
    /// Print the raw JSON answer.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    op: CtlOp,
}

#[derive(Subcommand)]
pub enum CtlOp {
    /// Lock a user (as another connection holding its backup), or with
    /// --mailbox/--verb answer matching commands LOCKED.
    Lock {
        /// The user.
        user: Option<String>,
        /// Only this mailbox (internal name).
        #[arg(long)]
        mailbox: Option<String>,
        /// Only this command (`APPLY MAILBOX`, `GET`, …).
        #[arg(long)]
        verb: Option<String>,
        /// `hold` (another process holds the user) or `reject` (matching
        /// commands answered LOCKED).
        #[arg(long, value_parser = ["hold", "reject"])]
        mode: Option<String>,
        /// Close after this many milliseconds.
        #[arg(long)]
        for_ms: Option<u64>,
        /// Close after this many LOCKED answers.
        #[arg(long)]
        attempts: Option<u64>,
        /// Lock name (default `ctl-<target>`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Close locks by name, or every lock on exactly this user.
    Unlock {
        /// Lock name or user.
        name: String,
    },
    /// Add a fault rule.
    Fault(Box<FaultArgs>),
    /// Reach a named mark.
    Mark {
        /// Its name.
        name: String,
    },
    /// Remove every lock and fault.
    Clear,
    /// Show locks, faults and per-user counters.
    Status,
}

#[derive(Args)]
pub struct FaultArgs {
    /// What to do (the plan file's `action`; see scenarios/README.md).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(backupd_sim::fault::Action::NAMES))]
    action: String,
    /// Only commands with this label or leading words.
    #[arg(long)]
    verb: Option<String>,
    /// Only commands touching this user.
    #[arg(long)]
    user: Option<String>,
    /// Only commands naming this mailbox.
    #[arg(long)]
    mailbox: Option<String>,
    /// Fire on the nth match only.
    #[arg(long)]
    nth: Option<u64>,
    /// Fire on each match with this probability.
    #[arg(long)]
    probability: Option<f64>,
    /// Fire at most this many times.
    #[arg(long)]
    times: Option<u64>,
    /// partial-reply: bytes to send.
    #[arg(long)]
    bytes: Option<usize>,
    /// delay: milliseconds.
    #[arg(long)]
    delay_ms: Option<u64>,
    /// no: error code word.
    #[arg(long)]
    code: Option<String>,
    /// no, bad, bye: reply text.
    #[arg(long)]
    text: Option<String>,
    /// refuse-connections, restart: milliseconds.
    #[arg(long)]
    for_ms: Option<u64>,
    /// hide-missing: how many GUIDs.
    #[arg(long)]
    count: Option<usize>,
    /// corrupt: which stored state to break (forget-mailbox, flag, subscription, …).
    #[arg(long)]
    what: Option<String>,
    /// Rule name.
    #[arg(long)]
    name: Option<String>,
}

pub fn run(args: CtlArgs) -> Result<ExitCode> {
    use backupd_sim::fault::{FaultSpec, LockSpec, MatchSpec, TriggerSpec, TriggerTable};
    use backupd_sim::server::control::{request, Request};
    let req = match args.op {
        CtlOp::Lock {
            user,
            mailbox,
            verb,
            mode,
            for_ms,
            attempts,
            name,
        } => Request::Lock {
            lock: LockSpec {
                name,
                user,
                mailbox,
                verb,
                mode,
                open: None,
                close: match (for_ms, attempts) {
                    (Some(ms), _) => Some(TriggerSpec::Table(TriggerTable {
                        after_ms: Some(ms),
                        ..TriggerTable::default()
                    })),
                    (None, Some(n)) => Some(TriggerSpec::Table(TriggerTable {
                        attempts: Some(n),
                        ..TriggerTable::default()
                    })),
                    (None, None) => None,
                },
            },
        },
        CtlOp::Unlock { name } => Request::Unlock { name },
        CtlOp::Fault(f) => Request::Fault {
            fault: FaultSpec {
                name: f.name,
                when: MatchSpec {
                    verb: f.verb,
                    user: f.user,
                    mailbox: f.mailbox,
                    ..MatchSpec::default()
                },
                nth: f.nth,
                probability: f.probability,
                times: f.times,
                action: f.action,
                bytes: f.bytes,
                delay_ms: f.delay_ms,
                code: f.code,
                text: f.text,
                for_ms: f.for_ms,
                count: f.count,
                what: f.what,
            },
        },
        CtlOp::Mark { name } => Request::Mark { name },
        CtlOp::Clear => Request::Clear,
        CtlOp::Status => Request::Status,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(10), request(args.addr, &req)).await
        })
        .map_err(|_| anyhow::anyhow!("no answer from `{}` within 10 s", args.addr))?
        .with_context(|| format!("talking to the control endpoint `{}`", args.addr))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else if let Some(e) = &answer.error {
        eprintln!("backupd-sim ctl: {e}");
    } else if let Some(status) = &answer.status {
        print!("{}", describe_status(status));
    }
    Ok(if answer.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A readable summary of a control status.
fn describe_status(s: &serde_json::Value) -> String {
    let mut out = format!("seed {}\n", s["seed"]);
    let locks = s["locks"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("locks: {}\n", locks.len()));
    for l in &locks {
        out.push_str(&format!(
            "  {} [{}] {} target {} hits {}\n",
            l["name"].as_str().unwrap_or("?"),
            l["mode"].as_str().unwrap_or("?"),
            if l["active"] == true {
                "OPEN"
            } else {
                "closed"
            },
            l["target"],
            l["hits"]
        ));
    }
    let faults = s["faults"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("faults: {}\n", faults.len()));
    for f in &faults {
        out.push_str(&format!(
            "  {} {} when {} matches {} fires {}\n",
            f["name"].as_str().unwrap_or("?"),
            f["action"]["kind"].as_str().unwrap_or("?"),
            f["when"],
            f["matches"],
            f["fires"]
        ));
    }
    if let Some(users) = s["users"].as_object() {
        out.push_str("users:\n");
        for (u, c) in users {
            out.push_str(&format!(
                "  {u}: {} commands, {} locked, {} faults\n",
                c["commands"], c["locked"], c["faults"]
            ));
        }
    }
    if s["refusing_ms"].as_u64().unwrap_or(0) > 0 {
        out.push_str(&format!(
            "refusing connections for {} ms\n",
            s["refusing_ms"]
        ));
    }
    out
}
