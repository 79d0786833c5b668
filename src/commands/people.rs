//! `vendor …` and `target …`: registering who connects and where to.

use super::Ctx;
use crate::UserError;
use crate::cli::{ClientCommand, Person, TargetCommand, TechCommand, VendorCommand};
use crate::keys::{parse_public_key, read_public_key};
use crate::store::NewTarget;

pub fn vendor(ctx: &mut Ctx<'_>, cmd: VendorCommand) -> anyhow::Result<()> {
    let store = ctx.store;
    let out = &mut *ctx.out;
    match cmd {
        VendorCommand::Add(Person { name, email, keys }) => {
            let keys = parse_keys(&keys)?;
            store.vendor_add(&name, &email, &keys)?;
            say!(out, "vendor {name} added with {} key(s)", keys.len());
        }
        VendorCommand::List => {
            let vendors = store.vendor_list()?;
            if vendors.is_empty() {
                say!(out, "no vendors; add one with: chaperone vendor add NAME --email ADDR --key KEY");
            }
            for v in vendors {
                let state = if v.enabled { "enabled" } else { "disabled" };
                say!(out, "{:<20} {:<8} {:<30} {} key(s)", v.name, state, v.email, v.keys.len());
            }
        }
        VendorCommand::Show { name } => {
            let v = store.vendor(&name)?.ok_or_else(|| UserError(format!("no vendor {name:?}")))?;
            say!(out, "vendor:  {}", v.name);
            say!(out, "email:   {}", v.email);
            say!(out, "state:   {}", if v.enabled { "enabled" } else { "disabled" });
            say!(out, "created: {}", v.created_at.format("%Y-%m-%d %H:%M:%S UTC"));
            for key in &v.keys {
                say!(out, "key:     {}", key_line(key));
            }
        }
        VendorCommand::Disable { name } => {
            store.vendor_set_enabled(&name, false)?;
            say!(out, "vendor {name} disabled");
        }
        VendorCommand::Enable { name } => {
            store.vendor_set_enabled(&name, true)?;
            say!(out, "vendor {name} enabled");
        }
    }
    Ok(())
}

pub fn target(ctx: &mut Ctx<'_>, cmd: TargetCommand) -> anyhow::Result<()> {
    let store = ctx.store;
    let out = &mut *ctx.out;
    match cmd {
        TargetCommand::Add { name, address, host_key, accounts, privileged_accounts, client } => {
            let key = read_public_key(&host_key)?;
            store.target_add(&NewTarget {
                name: &name,
                address: &address,
                host_key: &key,
                accounts: &accounts,
                privileged_accounts: &privileged_accounts,
                client: &client,
            })?;
            say!(out, "target {name} added at {address}, host key {}", crate::keys::fingerprint(&key));
        }
        TargetCommand::SetClient { name, client } => {
            store.target_set_client(&name, &client)?;
            say!(out, "target {name} belongs to client {client}");
        }
        TargetCommand::List => {
            let targets = store.target_list()?;
            if targets.is_empty() {
                say!(
                    out,
                    "no targets; add one with: chaperone target add NAME --address HOST:PORT --host-key KEY --account USER"
                );
            }
            for t in targets {
                let client = t.client.as_deref().unwrap_or("-");
                say!(out, "{:<20} {:<28} {:<16} {}", t.name, t.address, client, t.accounts.join(","));
            }
        }
        TargetCommand::Show { name } => {
            let t = store.target(&name)?.ok_or_else(|| UserError(format!("no target {name:?}")))?;
            let fp = parse_public_key(&t.host_key).map(|k| crate::keys::fingerprint(&k)).unwrap_or_default();
            say!(out, "target:   {}", t.name);
            say!(out, "address:  {}", t.address);
            say!(out, "host key: {fp} {}", t.host_key);
            say!(out, "accounts: {}", t.accounts.join(", "));
            if !t.privileged_accounts.is_empty() {
                say!(out, "privileged: {}", t.privileged_accounts.join(", "));
            }
            say!(out, "client:   {}", t.client.as_deref().unwrap_or("(none: set one with target set-client)"));
            say!(out, "created:  {}", t.created_at.format("%Y-%m-%d %H:%M:%S UTC"));
        }
        TargetCommand::Remove { name } => {
            store.target_remove(&name)?;
            say!(out, "target {name} removed");
        }
    }
    Ok(())
}

pub fn client(ctx: &mut Ctx<'_>, cmd: ClientCommand) -> anyhow::Result<()> {
    let store = ctx.store;
    let out = &mut *ctx.out;
    match cmd {
        ClientCommand::Add { name, emails } => {
            store.client_add(&name, &emails)?;
            say!(out, "client {name} added");
        }
        ClientCommand::List => {
            let clients = store.client_list()?;
            if clients.is_empty() {
                say!(out, "no clients; add one with: chaperone client add NAME --email ADDR");
            }
            for c in clients {
                say!(out, "{:<20} {}", c.name, c.emails.join(", "));
            }
        }
        ClientCommand::Show { name } => {
            let c = store.client(&name)?.ok_or_else(|| UserError(format!("no client {name:?}")))?;
            say!(out, "client:  {}", c.name);
            say!(out, "emails:  {}", c.emails.join(", "));
            let targets: Vec<String> = store
                .target_list()?
                .into_iter()
                .filter(|t| t.client.as_deref() == Some(&c.name))
                .map(|t| t.name)
                .collect();
            say!(out, "targets: {}", if targets.is_empty() { "-".to_string() } else { targets.join(", ") });
        }
    }
    Ok(())
}

pub fn tech(ctx: &mut Ctx<'_>, cmd: TechCommand) -> anyhow::Result<()> {
    let store = ctx.store;
    let out = &mut *ctx.out;
    match cmd {
        TechCommand::Add(Person { name, email, keys }) => {
            let keys = parse_keys(&keys)?;
            store.tech_add(&name, &email, &keys)?;
            say!(out, "technician {name} added with {} key(s)", keys.len());
        }
        TechCommand::List => {
            let techs = store.tech_list()?;
            if techs.is_empty() {
                say!(out, "no technicians; add one with: chaperone tech add NAME --email ADDR --key KEY");
            }
            for t in techs {
                let state = if t.enabled { "enabled" } else { "disabled" };
                say!(out, "{:<20} {:<8} {}", t.name, state, t.email);
            }
        }
        TechCommand::Show { name } => {
            let t = store.tech(&name)?.ok_or_else(|| UserError(format!("no technician {name:?}")))?;
            say!(out, "technician: {}", t.name);
            say!(out, "email:      {}", t.email);
            say!(out, "state:      {}", if t.enabled { "enabled" } else { "disabled" });
            for key in &t.keys {
                say!(out, "key:        {}", key_line(key));
            }
        }
        TechCommand::Disable { name } => {
            store.tech_set_enabled(&name, false)?;
            say!(out, "technician {name} disabled");
        }
    }
    Ok(())
}

/// The `--key` arguments as public keys; the first malformed one is the error.
fn parse_keys(keys: &[String]) -> Result<Vec<russh::keys::PublicKey>, UserError> {
    keys.iter().map(|k| read_public_key(k)).collect()
}

/// A registered key as shown: fingerprint, then the OpenSSH line.
fn key_line(key: &str) -> String {
    let fp = parse_public_key(key).map(|k| crate::keys::fingerprint(&k)).unwrap_or_default();
    format!("{fp} {key}")
}
