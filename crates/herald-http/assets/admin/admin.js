// Herald's admin console: clients, mailings with live progress and charts, provider health,
// real-time figures and notices, over Herald's own REST API, its /ws real-time protocol (a
// mailing's `mailing:<id>` stream) and /metrics. Plain JavaScript ES modules, no framework, no
// build step; charts are uPlot (vendor/, MIT), served from the binary like everything here. This
// entry module wires the page and starts it.

import { $, notice } from "./dom.js";
import { route } from "./router.js";
import { showSignin, signIn, signOut, start, startSso } from "./session.js";
import { onSessionRefused, state } from "./state.js";

onSessionRefused(signOut);

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  $("sso-link").addEventListener("click", startSso);
  // A single sign-on ends here with the token in the fragment, which no server sees; it is
  // taken only when this tab started that sign-in.
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
  if (fragment.get("access_token")) {
    const once = sessionStorage.getItem("herald.admin.sso");
    sessionStorage.removeItem("herald.admin.sso");
    if (once && new URLSearchParams(location.search).get("sso") === once) {
      state.token = fragment.get("access_token");
      sessionStorage.setItem("herald.admin.token", state.token);
    } else {
      notice("A sign-in this page did not start was ignored.");
    }
    history.replaceState(null, "", "/admin/#/mailings");
  }
  if (state.token) start(); else showSignin();
});
