//! `vendor …` and `target …`: registering who connects and where to.

use crate::UserError;
use crate::cli::{TargetCommand, VendorCommand};
use crate::keys::parse_public_key;
use crate::store::Store;

pub fn vendor(store: &Store, cmd: VendorCommand) -> anyhow::Result<()> {
    match cmd {
        VendorCommand::Add { name, email, keys } => {
            let keys = keys
                .iter()
                .map(|k| parse_public_key(k))
                .collect::<Result<Vec<_>, _>>()?;
            store.vendor_add(&name, &email, &keys)?;
            println!("vendor {name} added with {} key(s)", keys.len());
        }
        VendorCommand::List => {
            let vendors = store.vendor_list()?;
            if vendors.is_empty() {
                println!(
                    "no vendors; add one with: chaperone vendor add NAME --email ADDR --key KEY"
                );
            }
            for v in vendors {
                let state = if v.enabled { "enabled" } else { "disabled" };
                println!(
                    "{:<20} {:<8} {:<30} {} key(s)",
                    v.name,
                    state,
                    v.email,
                    v.keys.len()
                );
            }
        }
        VendorCommand::Show { name } => {
            let v = store
                .vendor(&name)?
                .ok_or_else(|| UserError(format!("no vendor {name:?}")))?;
            println!("vendor:  {}", v.name);
            println!("email:   {}", v.email);
            println!(
                "state:   {}",
                if v.enabled { "enabled" } else { "disabled" }
            );
            println!("created: {}", v.created_at.format("%Y-%m-%d %H:%M:%S UTC"));
            for key in &v.keys {
                let fp = parse_public_key(key)
                    .map(|k| crate::keys::fingerprint(&k))
                    .unwrap_or_default();
                println!("key:     {fp} {key}");
            }
        }
        VendorCommand::Disable { name } => {
            store.vendor_set_enabled(&name, false)?;
            println!("vendor {name} disabled");
        }
        VendorCommand::Enable { name } => {
            store.vendor_set_enabled(&name, true)?;
            println!("vendor {name} enabled");
        }
    }
    Ok(())
}

pub fn target(store: &Store, cmd: TargetCommand) -> anyhow::Result<()> {
    match cmd {
        TargetCommand::Add {
            name,
            address,
            host_key,
            accounts,
        } => {
            let key = parse_public_key(&host_key)?;
            store.target_add(&name, &address, &key, &accounts)?;
            println!(
                "target {name} added at {address}, host key {}",
                crate::keys::fingerprint(&key)
            );
        }
        TargetCommand::List => {
            let targets = store.target_list()?;
            if targets.is_empty() {
                println!(
                    "no targets; add one with: chaperone target add NAME --address HOST:PORT --host-key KEY --account USER"
                );
            }
            for t in targets {
                println!("{:<20} {:<28} {}", t.name, t.address, t.accounts.join(","));
            }
        }
        TargetCommand::Show { name } => {
            let t = store
                .target(&name)?
                .ok_or_else(|| UserError(format!("no target {name:?}")))?;
            let fp = parse_public_key(&t.host_key)
                .map(|k| crate::keys::fingerprint(&k))
                .unwrap_or_default();
            println!("target:   {}", t.name);
            println!("address:  {}", t.address);
            println!("host key: {fp} {}", t.host_key);
            println!(
                "accounts: {} (default: {})",
                t.accounts.join(", "),
                t.accounts.first().map(String::as_str).unwrap_or("-")
            );
            println!("created:  {}", t.created_at.format("%Y-%m-%d %H:%M:%S UTC"));
        }
        TargetCommand::Remove { name } => {
            store.target_remove(&name)?;
            println!("target {name} removed");
        }
    }
    Ok(())
}
