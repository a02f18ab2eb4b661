//! The page shell (head, navigation, sign-out) and the small pieces every
//! page uses: state badges, CSRF fields, action buttons, JSON blocks.

use super::assets;
use super::session::{CSRF_FIELD, Role, Session};
use crate::core::state::StateType;
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

/// The navigation's entries; the current one is marked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// `/`.
    Dashboard,
    /// `/deployments`.
    Deployments,
    /// `/runs`.
    Runs,
    /// `/artifacts`.
    Artifacts,
    /// `/work-pools`.
    Pools,
    /// `/events`.
    Events,
    /// `/automations`.
    Automations,
}

const ENTRIES: [(Nav, &str, &str); 7] = [
    (Nav::Dashboard, "/", "Dashboard"),
    (Nav::Deployments, "/deployments", "Deployments"),
    (Nav::Runs, "/runs", "Flow runs"),
    (Nav::Artifacts, "/artifacts", "Artifacts"),
    (Nav::Pools, "/work-pools", "Work pools"),
    (Nav::Events, "/events", "Events"),
    (Nav::Automations, "/automations", "Automations"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Sluice" }
            link rel="stylesheet" href=(assets::CSS_PATH);
            link rel="icon" href=(assets::ICON_PATH) type="image/svg+xml";
            script src=(assets::JS_PATH) defer {}
        }
    }
}

/// A full page for a signed-in user.
pub fn page(title: &str, session: &Session, current: Nav, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Sluice" }
                    nav aria-label="Main" {
                        ul {
                            @for (entry, href, label) in ENTRIES {
                                li { a href=(href) aria-current=[(entry == current).then_some("page")] { (label) } }
                            }
                        }
                    }
                    div.who {
                        span.tenant title="Tenant" { (session.principal.tenant) }
                        " "
                        span.role { (session.principal.role.name()) }
                        form.inline method="post" action="/signout" {
                            (csrf(session))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                div #flash role="alert" aria-live="assertive" hidden {}
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

/// A page without navigation: sign-in and errors.
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                header.top { a.brand href="/" { "Sluice" } }
                main #main { (body) }
            }
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf); }
}

/// A one-button form posting to `action`; only for tokens whose role is at least `needed`.
pub fn action(session: &Session, needed: Role, action: &str, label: &str, class: &str) -> Markup {
    html! {
        @if session.may(needed) {
            form.inline method="post" action=(action) {
                (csrf(session))
                button type="submit" class=(class) { (label) }
            }
        }
    }
}

/// A state as a coloured badge (colour from the class, the name as text).
pub fn badge(state: Option<StateType>) -> Markup {
    let name = state.map_or("Unknown", StateType::name);
    html! { span class={ "badge state-" (name) } data-state=(name) { (name) } }
}

/// A JSON value, pretty-printed in a block.
pub fn json_block(value: &Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    html! { pre.json { code { (text) } } }
}

/// A link to a flow run's page.
pub fn run_link(id: &str, name: &str) -> Markup {
    html! { a href={ "/runs/" (id) } { (name) } }
}

/// A link to a deployment's page.
pub fn deployment_link(full_name: &str) -> Markup {
    html! { a href={ "/deployments/" (full_name) } { (full_name) } }
}

/// An empty table's or list's message.
pub fn empty(text: &str) -> Markup {
    html! { p.empty { (text) } }
}
