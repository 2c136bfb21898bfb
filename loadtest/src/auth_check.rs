//! `auth`: what checking a token costs an API instance. A keyring is folded from N
//! `TokenIssued` events (as every instance folds the auth stream), then checks run back to
//! back on one thread — valid tokens drawn at random, and the same number of wrong secrets —
//! reporting the time per check. No services: the check is memory and one SHA-256.

use std::time::Instant;

use clap::Args;
use nerve_api::auth::keyring::{Keyring, Refusal};
use nerve_api::auth::token;
use nerve_schemas::{AuthEvent, Envelope, TokenIssued};

#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Tokens in the keyring.
    #[arg(long, default_value_t = 10_000)]
    pub tokens: u32,
    /// Checks of each kind (valid, wrong secret).
    #[arg(long, default_value_t = 1_000_000)]
    pub checks: u32,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub tokens: u32,
    pub checks: u32,
    pub fold_ms: f64,
    pub valid_ns_per_check: f64,
    pub wrong_ns_per_check: f64,
}

pub fn run(args: AuthArgs) -> anyhow::Result<()> {
    let keyring = Keyring::default();
    let started = Instant::now();
    let minted: Vec<token::Minted> = (0..args.tokens.max(1)).map(|_| token::mint(None)).collect();
    for m in &minted {
        keyring.apply(&AuthEvent::TokenIssued(TokenIssued {
            envelope: Envelope::new::<TokenIssued>(&m.id, 1_700_000_000_000),
            token_id: m.id.clone(),
            name: "bench".into(),
            role: "viewer".into(),
            secret_sha256: token::hex(&m.secret_sha256),
            expires_at_ms: i64::MAX,
            issued_by: "bench".into(),
        }));
    }
    keyring.loaded();
    let fold_ms = started.elapsed().as_secs_f64() * 1e3;
    let now = nerve_platform::now_ms();
    // A fixed stride through the tokens: every check a different one, no RNG in the loop.
    let pick = |i: u32| &minted[(i as usize * 7919) % minted.len()];

    let started = Instant::now();
    for i in 0..args.checks {
        let who = keyring.check(Some(&pick(i).token), now);
        anyhow::ensure!(who.is_ok(), "a valid token was refused: {who:?}");
    }
    let valid_ns = started.elapsed().as_secs_f64() * 1e9 / f64::from(args.checks.max(1));

    let wrong: Vec<String> = minted
        .iter()
        .map(|m| format!("nerve_{}_{}", m.id, "0".repeat(64)))
        .collect();
    let started = Instant::now();
    for i in 0..args.checks {
        let t = &wrong[(i as usize * 7919) % wrong.len()];
        anyhow::ensure!(
            keyring.check(Some(t), now) == Err(Refusal::WrongSecret),
            "a wrong secret was not refused"
        );
    }
    let wrong_ns = started.elapsed().as_secs_f64() * 1e9 / f64::from(args.checks.max(1));

    let report = Report {
        tokens: args.tokens,
        checks: args.checks,
        fold_ms,
        valid_ns_per_check: valid_ns,
        wrong_ns_per_check: wrong_ns,
    };
    println!(
        "auth: {} tokens folded in {:.1} ms; a check takes {:.0} ns (valid), {:.0} ns (wrong secret)",
        report.tokens, report.fold_ms, report.valid_ns_per_check, report.wrong_ns_per_check
    );
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}
