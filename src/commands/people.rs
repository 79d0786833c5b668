//! `vendor …`, `tech …`, `target …` and `client …`: registering who connects and where to.
//!
//! Every change is audited (the actor: the local user). Disabling someone or removing a
//! key also reaches live connections: the running `serve` checks them every second (see
//! the scheduler); a target is removed only once no booking needs it.

use super::Ctx;
use crate::UserError;
use crate::audit::Event;
use crate::cli::{ClientCommand, KeyCommand, Person, TargetCommand, TechCommand, VendorCommand};
use crate::keys::{fingerprint, parse_public_key, read_login_key, read_public_key};
use crate::sanitize::printable_line as line;
use crate::store::{NewTarget, Role};

pub fn vendor(ctx: &mut Ctx<'_>, cmd: VendorCommand) -> anyhow::Result<()> {
    let store = ctx.store;
    match cmd {
        VendorCommand::Add(Person { name, email, keys }) => {
            crate::names::check_line("--email", &email)?;
            let keys = parse_keys(&keys)?;
            store.vendor_add(&name, &email, &keys)?;
            let detail = format!("vendor {name} added with key(s) {}", fingerprints(&keys));
            audit(ctx, Event::new("vendor.add", detail).vendor(&name))?;
            say!(ctx.out, "vendor {name} added with {} key(s)", keys.len());
        }
        VendorCommand::List => {
            let vendors = store.vendor_list()?;
            if vendors.is_empty() {
                say!(ctx.out, "no vendors; add one with: chaperone vendor add NAME --email ADDR --key KEY");
            }
            for v in vendors {
                let state = if v.enabled { "enabled" } else { "disabled" };
                say!(ctx.out, "{:<20} {:<8} {:<30} {} key(s)", line(&v.name), state, line(&v.email), v.keys.len());
            }
        }
        VendorCommand::Show { name } => {
            let v = store.vendor(&name)?.ok_or_else(|| UserError(format!("no vendor {name:?}")))?;
            let out = &mut *ctx.out;
            say!(out, "vendor:  {}", line(&v.name));
            say!(out, "email:   {}", line(&v.email));
            say!(out, "state:   {}", if v.enabled { "enabled" } else { "disabled" });
            say!(out, "created: {}", v.created_at.format("%Y-%m-%d %H:%M:%S UTC"));
            for key in &v.keys {
                say!(out, "key:     {}", key_line(key));
            }
        }
        VendorCommand::Disable { name } => {
            store.vendor_set_enabled(&name, false)?;
            audit(ctx, Event::new("vendor.disable", format!("vendor {name} disabled")).vendor(&name))?;
            say!(ctx.out, "vendor {name} disabled (its live sessions end)");
        }
        VendorCommand::Enable { name } => {
            store.vendor_set_enabled(&name, true)?;
            audit(ctx, Event::new("vendor.enable", format!("vendor {name} enabled")).vendor(&name))?;
            say!(ctx.out, "vendor {name} enabled");
        }
        VendorCommand::Key(cmd) => keys(ctx, Role::Vendor, cmd)?,
    }
    Ok(())
}

/// `vendor key …` and `tech key …`.
fn keys(ctx: &mut Ctx<'_>, role: Role, cmd: KeyCommand) -> anyhow::Result<()> {
    let noun = role.noun();
    let (kind, name, detail) = match cmd {
        KeyCommand::Add { name, keys } => {
            let keys = parse_keys(&keys)?;
            ctx.store.key_add(role, &name, &keys)?;
            let detail = format!("key(s) {} added to {noun} {name}", fingerprints(&keys));
            ("key_add", name, detail)
        }
        KeyCommand::Remove { name, key } => {
            let fp = if key.starts_with("SHA256:") { key } else { fingerprint(&read_public_key(&key)?) };
            ctx.store.key_remove(role, &name, &fp)?;
            let detail = format!("key {fp} removed from {noun} {name} (connections that logged in with it end)");
            ("key_remove", name, detail)
        }
    };
    let kind = format!("{}.{kind}", if role == Role::Vendor { "vendor" } else { "tech" });
    let event = Event::new(&kind, detail.clone());
    audit(ctx, if role == Role::Vendor { event.vendor(&name) } else { event })?;
    say!(ctx.out, "{detail}");
    Ok(())
}

/// Appends a registry change to the audit log, in the name of the local user.
fn audit(ctx: &Ctx<'_>, event: Event) -> anyhow::Result<()> {
    ctx.store.audit(ctx.clock.now(), &event.actor(super::local_actor()))?;
    Ok(())
}

fn fingerprints(keys: &[russh::keys::PublicKey]) -> String {
    keys.iter().map(fingerprint).collect::<Vec<_>>().join(", ")
}

pub fn target(ctx: &mut Ctx<'_>, cmd: TargetCommand) -> anyhow::Result<()> {
    let store = ctx.store;
    let out = &mut *ctx.out;
    let change = match cmd {
        TargetCommand::Add { name, address, host_key, accounts, privileged_accounts, client } => {
            let key = read_login_key(&host_key)?;
            store.target_add(&NewTarget {
                name: &name,
                address: &address,
                host_key: &key,
                accounts: &accounts,
                privileged_accounts: &privileged_accounts,
                client: &client,
            })?;
            let detail = format!("target {name} added at {address}, host key {}", fingerprint(&key));
            Some(("target.add", detail))
        }
        TargetCommand::SetClient { name, client } => {
            store.target_set_client(&name, &client)?;
            Some(("target.set_client", format!("target {name} belongs to client {client}")))
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
                let accounts = t.accounts.join(",");
                say!(out, "{:<20} {:<28} {:<16} {}", line(&t.name), line(&t.address), line(client), line(&accounts));
            }
            None
        }
        TargetCommand::Show { name } => {
            let t = store.target(&name)?.ok_or_else(|| UserError(format!("no target {name:?}")))?;
            let fp = parse_public_key(&t.host_key).map(|k| fingerprint(&k)).unwrap_or_default();
            say!(out, "target:   {}", line(&t.name));
            say!(out, "address:  {}", line(&t.address));
            say!(out, "host key: {fp} {}", line(&t.host_key));
            say!(out, "accounts: {}", line(&t.accounts.join(", ")));
            if !t.privileged_accounts.is_empty() {
                say!(out, "privileged: {}", line(&t.privileged_accounts.join(", ")));
            }
            say!(out, "client:   {}", line(t.client.as_deref().unwrap_or("(none: set one with target set-client)")));
            say!(out, "created:  {}", t.created_at.format("%Y-%m-%d %H:%M:%S UTC"));
            None
        }
        TargetCommand::Remove { name } => {
            store.target_remove(&name, ctx.clock.now())?;
            Some(("target.remove", format!("target {name} removed")))
        }
    };
    if let Some((kind, detail)) = change {
        audit(ctx, Event::new(kind, detail.clone()))?;
        say!(ctx.out, "{detail}");
    }
    Ok(())
}

pub fn client(ctx: &mut Ctx<'_>, cmd: ClientCommand) -> anyhow::Result<()> {
    let store = ctx.store;
    match cmd {
        ClientCommand::Add { name, emails } => {
            for email in &emails {
                crate::names::check_line("--email", email)?;
            }
            store.client_add(&name, &emails)?;
            audit(ctx, Event::new("client.add", format!("client {name} added, mail to {}", emails.join(", "))))?;
            say!(ctx.out, "client {name} added");
        }
        ClientCommand::List => {
            let out = &mut *ctx.out;
            let clients = store.client_list()?;
            if clients.is_empty() {
                say!(out, "no clients; add one with: chaperone client add NAME --email ADDR");
            }
            for c in clients {
                say!(out, "{:<20} {}", line(&c.name), line(&c.emails.join(", ")));
            }
        }
        ClientCommand::Show { name } => {
            let c = store.client(&name)?.ok_or_else(|| UserError(format!("no client {name:?}")))?;
            let out = &mut *ctx.out;
            say!(out, "client:  {}", line(&c.name));
            say!(out, "emails:  {}", line(&c.emails.join(", ")));
            let targets: Vec<String> = store
                .target_list()?
                .into_iter()
                .filter(|t| t.client.as_deref() == Some(&c.name))
                .map(|t| t.name)
                .collect();
            say!(
                out,
                "targets: {}",
                if targets.is_empty() { "-".to_string() } else { line(&targets.join(", ")).into() }
            );
        }
    }
    Ok(())
}

pub fn tech(ctx: &mut Ctx<'_>, cmd: TechCommand) -> anyhow::Result<()> {
    let store = ctx.store;
    match cmd {
        TechCommand::Add(Person { name, email, keys }) => {
            crate::names::check_line("--email", &email)?;
            let keys = parse_keys(&keys)?;
            store.tech_add(&name, &email, &keys)?;
            let detail = format!("technician {name} added with key(s) {}", fingerprints(&keys));
            audit(ctx, Event::new("tech.add", detail))?;
            say!(ctx.out, "technician {name} added with {} key(s)", keys.len());
        }
        TechCommand::List => {
            let out = &mut *ctx.out;
            let techs = store.tech_list()?;
            if techs.is_empty() {
                say!(out, "no technicians; add one with: chaperone tech add NAME --email ADDR --key KEY");
            }
            for t in techs {
                let state = if t.enabled { "enabled" } else { "disabled" };
                say!(out, "{:<20} {:<8} {}", line(&t.name), state, line(&t.email));
            }
        }
        TechCommand::Show { name } => {
            let t = store.tech(&name)?.ok_or_else(|| UserError(format!("no technician {name:?}")))?;
            let out = &mut *ctx.out;
            say!(out, "technician: {}", line(&t.name));
            say!(out, "email:      {}", line(&t.email));
            say!(out, "state:      {}", if t.enabled { "enabled" } else { "disabled" });
            for key in &t.keys {
                say!(out, "key:        {}", key_line(key));
            }
        }
        TechCommand::Disable { name } => {
            store.tech_set_enabled(&name, false)?;
            audit(ctx, Event::new("tech.disable", format!("technician {name} disabled")))?;
            say!(ctx.out, "technician {name} disabled (open console connections close)");
        }
        TechCommand::Enable { name } => {
            store.tech_set_enabled(&name, true)?;
            audit(ctx, Event::new("tech.enable", format!("technician {name} enabled")))?;
            say!(ctx.out, "technician {name} enabled");
        }
        TechCommand::Key(cmd) => keys(ctx, Role::Technician, cmd)?,
    }
    Ok(())
}

/// The `--key` arguments as public keys; the first malformed or weak one is the error.
fn parse_keys(keys: &[String]) -> Result<Vec<russh::keys::PublicKey>, UserError> {
    keys.iter().map(|k| read_login_key(k)).collect()
}

/// A registered key as shown: fingerprint, then the OpenSSH line.
fn key_line(key: &str) -> String {
    let fp = parse_public_key(key).map(|k| fingerprint(&k)).unwrap_or_default();
    format!("{fp} {}", line(key))
}
