//! The credentials email: an HTML and a plain-text part rendered from
//! templates (`src/templates/credentials_email.*`). It carries the Tenant
//! URL and the "Get Secret Token" link, never the token.

use askama::Template;
use time::OffsetDateTime;

use super::CredentialError;
use crate::mail::Email;
use crate::store::TenantRecord;

#[derive(Template)]
#[template(path = "credentials_email.html")]
struct Html<'a> {
    tenant_name: &'a str,
    tenant_url: &'a str,
    link: &'a str,
    expires: &'a str,
}

#[derive(Template)]
#[template(path = "credentials_email.txt")]
struct Text<'a> {
    tenant_name: &'a str,
    tenant_url: &'a str,
    link: &'a str,
    expires: &'a str,
}

/// `2026-12-02 19:04 UTC`: unambiguous for every reader.
fn human(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.format(&f).unwrap_or_default()
}

pub fn credentials_email(
    tenant: &TenantRecord,
    tenant_url: &str,
    link: &str,
    expires: OffsetDateTime,
) -> Result<Email, CredentialError> {
    let expires = human(expires);
    let render = |e: askama::Error| CredentialError::Internal(format!("rendering the email: {e}"));
    let html = Html {
        tenant_name: &tenant.name,
        tenant_url,
        link,
        expires: &expires,
    }
    .render()
    .map_err(render)?;
    let text = Text {
        tenant_name: &tenant.name,
        tenant_url,
        link,
        expires: &expires,
    }
    .render()
    .map_err(render)?;
    Ok(Email {
        to: tenant.admin_email.clone(),
        subject: format!("SCIM provisioning credentials for {}", tenant.name),
        html,
        text,
    })
}
