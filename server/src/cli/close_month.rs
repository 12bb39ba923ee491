//! `distributor close-month`: closes the open month now, as an operator. On a terminal it asks
//! first, unless `--yes`. Prints one JSON line: the month closed and the month now open.

use super::operator::{block_on, Operator, OperatorArgs};
use protocol::{MonthState, RequestBody};
use serde_json::json;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Closes the open month of the distributor at `args.server`.
pub fn run(args: &OperatorArgs, yes: bool) -> ExitCode {
    let result = block_on(async {
        let operator = Operator::connect(args, "distributor-close-month").await?;
        let before = operator.status().await?;
        let open = before
            .month
            .as_ref()
            .filter(|m| m.state == MonthState::Open)
            .ok_or("no month is open")?;
        let id = open.id;
        if !yes && std::io::stdin().is_terminal() && !confirm(id.0)? {
            return Ok(None);
        }
        operator.call(RequestBody::CloseMonth).await?;
        let after = operator.status().await?;
        Ok(Some((id, after)))
    });
    match result {
        Ok(Some((closed, after))) => {
            let line = json!({
                "closed_month": closed.0,
                "reason": super::status::reason_name(protocol::CloseReason::Operator),
                "open_month": after.month.as_ref().filter(|m| m.state == MonthState::Open).map(|m| m.id.0),
            });
            println!("{line}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("not closed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Asks on the terminal; only "y" or "yes" confirms.
fn confirm(month: u32) -> Result<bool, String> {
    eprint!("Close month {month} now? Every manufacturer gets its settlement. [y/N] ");
    std::io::stderr().flush().map_err(|e| e.to_string())?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}
