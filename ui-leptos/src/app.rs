//! The HTML shell, the layout with navigation, and the routes.

use leptos::prelude::*;
use leptos_meta::{MetaTags, Title, provide_meta_context};
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

use crate::pages::access::{AuditPage, TokensPage};
use crate::pages::alerts::{AlertsPage, ChannelsPage, RulesPage};
use crate::pages::api::ApiPage;
use crate::pages::clusters::ClustersPage;
use crate::pages::dashboard::Dashboard;
use crate::pages::enrollment::EnrollmentPage;
use crate::pages::login::LoginPage;
use crate::pages::node::NodePage;
use crate::pages::nodes::NodesPage;
use crate::pages::tasks::{NewTaskPage, TaskPage, TasksPage};
use crate::session::{Session, logout, whoami};

/// The stylesheet, inlined so the first paint needs no second request.
const STYLE: &str = include_str!("../style/nerve.css");

/// The document around the app (server only).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light"/>
                <link rel="icon" href="/favicon.ico"/>
                <style>{STYLE}</style>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// Layout and routes. New sections add a nav link and a route.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Who is signed in (none on the login page): the nav shows it, pages offer only what the
    // role may do.
    let me = Resource::new(|| (), |()| whoami());
    provide_context(Session(Signal::derive(move || {
        me.get().and_then(Result::ok)
    })));
    let sign_out = Action::new(|(): &()| async move {
        let _ = logout().await;
        #[cfg(feature = "hydrate")]
        let _ = window().location().set_href("/login");
    });
    // Effects run only in the browser, after hydration: mark the page interactive (tests and
    // operators' tooling wait for it).
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Title text="Nerve"/>
        <Router>
            <a class="skip" href="#main">"Skip to content"</a>
            <Header me sign_out/>
            <main id="main">
                <Pages/>
            </main>
        </Router>
    }
}

/// The top bar: sections, and who is signed in. (Views are type-erased per part: one deeply
/// nested view type costs the server's render a deep stack in debug builds.)
#[component]
fn Header(
    me: Resource<Result<nerve_api::dto::auth::Identity, ServerFnError>>,
    sign_out: Action<(), ()>,
) -> AnyView {
    view! {
        <header class="top">
            <A href="/" attr:class="brand">"Nerve"</A>
            <nav aria-label="Sections">
                <A href="/" exact=true>"Dashboard"</A>
                <A href="/nodes">"Nodes"</A>
                <A href="/tasks">"Tasks"</A>
                <A href="/clusters">"Clusters"</A>
                <A href="/alerts">"Alerts"</A>
                <A href="/audit">"Audit"</A>
                <A href="/api-docs">"API"</A>
                <Suspense fallback=|| ()>
                    <Show when=|| crate::session::can(nerve_api::dto::auth::Right::Admin)>
                        <A href="/tokens">"Tokens"</A>
                        <A href="/enrollment">"Enrollment"</A>
                    </Show>
                </Suspense>
            </nav>
            <Suspense fallback=|| ()>
                {move || me.get().and_then(Result::ok).map(|who| view! {
                    <span class="who" data-testid="who">{who.name.clone()} " · " {who.role.as_str()}</span>
                    <button type="button" class="link" data-testid="sign-out"
                        on:click=move |_| { sign_out.dispatch(()); }>"Sign out"</button>
                })}
            </Suspense>
        </header>
    }
    .into_any()
}

/// Every page by its path.
#[component]
fn Pages() -> AnyView {
    view! {
        <Routes fallback=|| view! { <section><h1>"Not found"</h1><p>"No such page."</p></section> }>
            <Route path=path!("/") view=Dashboard/>
            <Route path=path!("/login") view=LoginPage/>
            <Route path=path!("/audit") view=AuditPage/>
            <Route path=path!("/api-docs") view=ApiPage/>
            <Route path=path!("/tokens") view=TokensPage/>
            <Route path=path!("/enrollment") view=EnrollmentPage/>
            <Route path=path!("/nodes") view=NodesPage/>
            <Route path=path!("/nodes/:id") view=NodePage/>
            <Route path=path!("/tasks") view=TasksPage/>
            <Route path=path!("/clusters") view=ClustersPage/>
            <Route path=path!("/alerts") view=AlertsPage/>
            <Route path=path!("/alerts/rules") view=RulesPage/>
            <Route path=path!("/alerts/channels") view=ChannelsPage/>
            <Route path=path!("/tasks/new") view=NewTaskPage/>
            <Route path=path!("/tasks/:id") view=TaskPage/>
        </Routes>
    }
    .into_any()
}
