// Signing in (with a password, or through single sign-on) and out; only an administrator gets
// past the sign-in to the views.

import { ApiError, api, problemText } from "./api.js";
import { $, notice } from "./dom.js";
import { route } from "./router.js";
import { closeView, state } from "./state.js";

export function signOut() {
  state.token = null;
  state.me = null;
  sessionStorage.removeItem("herald.admin.token");
  closeView();
  showSignin();
}

export function showSignin() {
  $("signin").hidden = false;
  $("refused").hidden = true;
  $("nav").hidden = true;
  $("whoami").hidden = true;
  $("view").replaceChildren();
  api("GET", "auth/oidc").then((sso) => { $("sso").hidden = !sso?.enabled; }, () => {});
}

// A sign-in through the provider is started here with a one-time value the page keeps: the
// token it comes back with is taken only with that value, so a link carrying someone else's
// token cannot sign this browser in.
export function startSso(event) {
  event.preventDefault();
  const once = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  sessionStorage.setItem("herald.admin.sso", once);
  location.assign(`/api/v1/auth/oidc/start?to=${encodeURIComponent(`/admin/?sso=${once}`)}`);
}

export async function signIn(event) {
  event.preventDefault();
  $("signin-error").textContent = "";
  try {
    const answer = await api("POST", "auth/login", {
      email: $("signin-email").value, password: $("signin-password").value,
    });
    state.token = answer.access_token;
    sessionStorage.setItem("herald.admin.token", state.token);
    await start();
  } catch (err) {
    $("signin-error").textContent = err instanceof ApiError ? problemText(err) : String(err);
  }
}

export async function start() {
  try {
    state.me = await api("GET", "me");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) notice(String(err));
    return;
  }
  $("signin").hidden = true;
  $("whoami").hidden = false;
  $("me").textContent = `${state.me.email} (${state.me.role})`;
  if (state.me.role !== "admin") {
    $("refused").hidden = false;
    $("refused-who").textContent = state.me.email;
    $("view").replaceChildren();
    return;
  }
  $("refused").hidden = true;
  $("nav").hidden = false;
  route();
}
