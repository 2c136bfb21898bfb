//! The sign-in page: paste a token; a valid one sets the session cookie and opens the
//! dashboard, anything else is explained in place.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::session::login;

#[component]
pub fn LoginPage() -> impl IntoView {
    let (token, set_token) = signal(String::new());
    let sign_in = Action::new(|token: &String| {
        let token = token.clone();
        async move { login(token).await }
    });
    let message = move || match sign_in.value().get() {
        Some(Ok(Ok(_))) => {
            #[cfg(feature = "hydrate")]
            let _ = window().location().set_href("/");
            None
        }
        Some(Ok(Err(reason))) => Some(reason),
        Some(Err(e)) => Some(format!("Could not sign in: {e}")),
        None => None,
    };
    view! {
        <Title text="Sign in · Nerve"/>
        <h1>"Sign in"</h1>
        <form class="panel form" on:submit=move |ev| {
            ev.prevent_default();
            sign_in.dispatch(token.get_untracked());
        }>
            <label for="token">"Token"</label>
            <input id="token" name="token" type="password" autocomplete="off" required
                placeholder="nerve_…"
                prop:value=token on:input=move |ev| set_token.set(event_target_value(&ev))/>
            <p class="hint">"An admin creates tokens with " <code>"nerve token create"</code>
                "; the first one is in " <code>"admin.token"</code> " in the data directory."</p>
            <button type="submit" data-testid="sign-in" disabled=move || sign_in.pending().get()>"Sign in"</button>
            {move || message().map(|m| view! { <p class="error" role="alert" data-testid="sign-in-error">{m}</p> })}
        </form>
    }
}
