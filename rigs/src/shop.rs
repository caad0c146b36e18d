//! Running the shop from the rigs: `ordershop-rigs shop <args>` is `ordershop <args>` (the same
//! library code), so chaos and bench can start roles and operator commands as processes without
//! needing the product binary of another package.

/// `ordershop-rigs shop <args>`: the command that runs `ordershop <args>` from this binary.
pub fn shop_command(args: &[&str]) -> anyhow::Result<tokio::process::Command> {
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find the ordershop-rigs binary: {e}"))?;
    let mut command = tokio::process::Command::new(exe);
    command.arg("shop").args(args);
    Ok(command)
}
