//! `vendor …` and `target …`: registering who connects and where to.

use crate::UserError;
use crate::cli::{ClientCommand, TargetCommand, TechCommand, VendorCommand};
use crate::keys::parse_public_key;
use crate::store::{NewTarget, Store};

pub fn vendor(store: &Store, cmd: VendorCommand) -> anyhow::Result<()> {
    match cmd {
        VendorCommand::Add { name, email, keys } => {
            let keys = keys.iter().map(|k| parse_public_key(k)).collect::<Result<Vec<_>, _>>()?;
            store.vendor_add(&name, &email, &keys)?;
            println!("vendor {name} added with {} key(s)", keys.len());
        }
        VendorCommand::List => {
            let vendors = store.vendor_list()?;
            if vendors.is_empty() {
                println!("no vendors; add one with: chaperone vendor add NAME --email ADDR --key KEY");
            }
            for v in vendors {
                let state = if v.enabled { "enabled" } else { "disabled" };
                println!("{:<20} {:<8} {:<30} {} key(s)", v.name, state, v.email, v.keys.len());
            }
        }
        VendorCommand::Show { name } => {
            let v = store.vendor(&name)?.ok_or_else(|| UserError(format!("no vendor {name:?}")))?;
            println!("vendor:  {}", v.name);
            println!("email:   {}", v.email);
            println!("state:   {}", if v.enabled { "enabled" } else { "disabled" });
            println!("created: {}", v.created_at.format("%Y-%m-%d %H:%M:%S UTC"));
            for key in &v.keys {
                let fp = parse_public_key(key).map(|k| crate::keys::fingerprint(&k)).unwrap_or_default();
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
        TargetCommand::Add { name, address, host_key, accounts, privileged_accounts, client } => {
            let key = parse_public_key(&host_key)?;
            store.target_add(&NewTarget {
                name: &name,
                address: &address,
                host_key: &key,
                accounts: &accounts,
                privileged_accounts: &privileged_accounts,
                client: &client,
            })?;
            println!("target {name} added at {address}, host key {}", crate::keys::fingerprint(&key));
        }
        TargetCommand::SetClient { name, client } => {
            store.target_set_client(&name, &client)?;
            println!("target {name} belongs to client {client}");
        }
        TargetCommand::List => {
            let targets = store.target_list()?;
            if targets.is_empty() {
                println!(
                    "no targets; add one with: chaperone target add NAME --address HOST:PORT --host-key KEY --account USER"
                );
            }
            for t in targets {
                let client = t.client.as_deref().unwrap_or("-");
                println!("{:<20} {:<28} {:<16} {}", t.name, t.address, client, t.accounts.join(","));
            }
        }
        TargetCommand::Show { name } => {
            let t = store.target(&name)?.ok_or_else(|| UserError(format!("no target {name:?}")))?;
            let fp = parse_public_key(&t.host_key).map(|k| crate::keys::fingerprint(&k)).unwrap_or_default();
            println!("target:   {}", t.name);
            println!("address:  {}", t.address);
            println!("host key: {fp} {}", t.host_key);
            println!("accounts: {}", t.accounts.join(", "));
            if !t.privileged_accounts.is_empty() {
                println!("privileged: {}", t.privileged_accounts.join(", "));
            }
            println!("client:   {}", t.client.as_deref().unwrap_or("(none: set one with target set-client)"));
            println!("created:  {}", t.created_at.format("%Y-%m-%d %H:%M:%S UTC"));
        }
        TargetCommand::Remove { name } => {
            store.target_remove(&name)?;
            println!("target {name} removed");
        }
    }
    Ok(())
}

pub fn client(store: &Store, cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Add { name, emails } => {
            store.client_add(&name, &emails)?;
            println!("client {name} added");
        }
        ClientCommand::List => {
            let clients = store.client_list()?;
            if clients.is_empty() {
                println!("no clients; add one with: chaperone client add NAME --email ADDR");
            }
            for c in clients {
                println!("{:<20} {}", c.name, c.emails.join(", "));
            }
        }
        ClientCommand::Show { name } => {
            let c = store.client(&name)?.ok_or_else(|| UserError(format!("no client {name:?}")))?;
            println!("client:  {}", c.name);
            println!("emails:  {}", c.emails.join(", "));
            let targets: Vec<String> = store
                .target_list()?
                .into_iter()
                .filter(|t| t.client.as_deref() == Some(&c.name))
                .map(|t| t.name)
                .collect();
            println!("targets: {}", if targets.is_empty() { "-".to_string() } else { targets.join(", ") });
        }
    }
    Ok(())
}

pub fn tech(store: &Store, cmd: TechCommand) -> anyhow::Result<()> {
    match cmd {
        TechCommand::Add { name, email, keys } => {
            let keys = keys.iter().map(|k| parse_public_key(k)).collect::<Result<Vec<_>, _>>()?;
            store.tech_add(&name, &email, &keys)?;
            println!("technician {name} added with {} key(s)", keys.len());
        }
        TechCommand::List => {
            let techs = store.tech_list()?;
            if techs.is_empty() {
                println!("no technicians; add one with: chaperone tech add NAME --email ADDR --key KEY");
            }
            for t in techs {
                let state = if t.enabled { "enabled" } else { "disabled" };
                println!("{:<20} {:<8} {}", t.name, state, t.email);
            }
        }
        TechCommand::Show { name } => {
            let t = store.tech(&name)?.ok_or_else(|| UserError(format!("no technician {name:?}")))?;
            println!("technician: {}", t.name);
            println!("email:      {}", t.email);
            println!("state:      {}", if t.enabled { "enabled" } else { "disabled" });
            for key in &t.keys {
                let fp = parse_public_key(key).map(|k| crate::keys::fingerprint(&k)).unwrap_or_default();
                println!("key:        {fp} {key}");
            }
        }
        TechCommand::Disable { name } => {
            store.tech_set_enabled(&name, false)?;
            println!("technician {name} disabled");
        }
    }
    Ok(())
}
